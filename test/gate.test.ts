import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { encode, encodeFrame, subjectFor } from "@trias/protocol";
import { loadPolicy, type LoadedPolicy } from "@trias/policy";
import { revokeKey } from "@trias/signing";
import {
  policyVariant,
  executions,
  startHarness,
  uniqueRun,
  waitForKind,
  waitForRejection,
  type Harness,
} from "./helpers/harness.js";

// Only the executor and the verifier run: the test plays every other role with real keys
// (and an attacker's hand), so each message the executor sees is exactly the one under test.
describe("executor gate", () => {
  let h: Harness;
  let policy: LoadedPolicy;
  const std = { reviewers: 1, strategies: ["rules" as const], human: false };
  const full = { reviewers: 2, strategies: ["rules" as const], human: false };
  /** A read, which the policy makes light: the only step a light assignment may carry. */
  const READ = { tool: "ledger.balance", args: { account: "alice" } };

  beforeAll(async () => {
    const file = policyVariant("dev", "gate-test", (doc) => {
      for (const t of Object.values(doc.tiers)) t["reviewTimeoutMs"] = 1500;
    });
    policy = loadPolicy(file);
    h = await startHarness({
      agents: [
        { name: "executor", role: "executor" },
        { name: "verifier", role: "verifier" },
      ],
      policyFile: file,
      extraIdentities: [{ name: "reviewer-old", role: "reviewer" }],
      revoked: ["reviewer-old"],
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function noEffect(run: string): Promise<void> {
    expect(await executions(h, run)).toHaveLength(0);
    const { state } = await h.ledger.read();
    expect(Object.keys(state.applied).filter((k) => k.startsWith(`${run}:`))).toEqual([]);
  }

  it("gate - a correctly authorised step runs (the control for every refusal below)", async () => {
    const run = uniqueRun("ok");
    const p = h.forge.proposal(run);
    const a = h.forge.assignment(p, policy.digest, "standard", std);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-1").bytes);
    const exec = await waitForKind(h, run, "step_executed");
    expect(exec.body.outcome).toBe("ok");
    expect(exec.body.approvals).toHaveLength(1);
    expect((await h.ledger.read()).state.applied[`${run}:0:0`]).toBeDefined();
  });

  it("gate - a process allowed to publish cannot take another agent's message id first", async () => {
    // JetStream drops a message whose id it has seen, whoever sent the first one. Were the
    // executor's id for this step readable ("exec-<run>-0-0"), this would silently drop
    // its announcement; ids are keyed by the signer, so the squatter guesses wrong.
    const run = uniqueRun("squat");
    const light = { reviewers: 0, strategies: [], human: false };
    await h.forge.send("reviewer", "verdict", run, new Uint8Array([1, 2, 3]), `exec-${run}-0-0`);
    const p = h.forge.proposal(run, READ);
    const a = h.forge.assignment(p, policy.digest, "light", light);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const exec = await waitForKind(h, run, "step_executed");
    expect(exec.body.outcome).toBe("ok");
    expect(exec.id).not.toBe(`exec-${run}-0-0`);
    expect(exec.id.startsWith(`exec-${run}-0-0.`)).toBe(true);
  });

  it("gate - refuses an unsigned message", async () => {
    const run = uniqueRun("unsigned");
    const p = h.forge.proposal(run);
    const a = h.forge.assignment(p, policy.digest, "light", {
      reviewers: 0,
      strategies: [],
      human: false,
    });
    await h.forge.send("router", "tier_assigned", run, encode(a.message));
    const r = await waitForRejection(h, run, "executor", "signature_missing");
    expect(r.body.reason).toMatch(/unsigned/);
    await noEffect(run);
  });

  it("gate - refuses a bad signature", async () => {
    const run = uniqueRun("badsig");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "light", {
      reviewers: 0,
      strategies: [],
      human: false,
    });
    const payload = encode(a.message);
    const sig = h.signer("router").signBytes(payload);
    sig[10] = (sig[10] ?? 0) ^ 0xff;
    await h.forge.send(
      "router",
      "tier_assigned",
      run,
      encodeFrame({ kid: h.signer("router").kid, sig, payload }),
    );
    await waitForRejection(h, run, "executor", "signature_invalid");
    await noEffect(run);
  });

  it("gate - refuses a key of the wrong role", async () => {
    const run = uniqueRun("role");
    // A reviewer key signs a tier assignment, claiming to be the router.
    const a = h.forge.assignment(
      h.forge.proposal(run),
      policy.digest,
      "light",
      { reviewers: 0, strategies: [], human: false },
      { as: "reviewer-1", role: "router" },
    );
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const r = await waitForRejection(h, run, "executor", "role_mismatch");
    expect(r.body.reason).toMatch(/reviewer/);
    await noEffect(run);
  });

  it("gate - refuses a revoked key", async () => {
    const run = uniqueRun("revoked");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "standard", std);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-old").bytes);
    const r = await waitForRejection(h, run, "executor", "key_revoked");
    expect(r.body.reason).toMatch(/reviewer-old/);
    await noEffect(run);
  });

  it("gate - a key revoked while the agents run is refused from then on, without a restart", async () => {
    const before = uniqueRun("prerevoke");
    const a0 = h.forge.assignment(h.forge.proposal(before), policy.digest, "standard", std);
    await h.forge.send("router", "tier_assigned", before, a0.bytes);
    await h.forge.send("reviewer", "verdict", before, h.forge.verdict(a0, "reviewer-3").bytes);
    await waitForKind(h, before, "step_executed");

    revokeKey(h.keyDir, "reviewer-3");
    await new Promise((r) => setTimeout(r, 2500));
    const run = uniqueRun("revoked-live");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "standard", std);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-3").bytes);
    const r = await waitForRejection(h, run, "executor", "key_revoked");
    expect(r.body.reason).toMatch(/reviewer-3/);
    await noEffect(run);
  });

  it("gate - refuses fewer approvals than the tier needs", async () => {
    const run = uniqueRun("quorum");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "full", full);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-1").bytes);
    const r = await waitForRejection(h, run, "executor", "quorum_not_met", 15_000);
    expect(r.body.reason).toMatch(/1 of 2/);
    await noEffect(run);
  });

  it("gate - counts two approvals from one key once", async () => {
    const run = uniqueRun("dupe");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "full", full);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-1").bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-1").bytes);
    const r = await waitForRejection(h, run, "executor", "duplicate_reviewer");
    expect(r.body.reason).toMatch(/one key counts once/);
    await waitForRejection(h, run, "executor", "quorum_not_met", 15_000);
    await noEffect(run);
  });

  it("gate - refuses an approval bound to another digest", async () => {
    const run = uniqueRun("digest");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "standard", std);
    const other = h.forge.assignment(
      h.forge.proposal(run, { args: { from: "alice", to: "bob", amount: 900 } }),
      policy.digest,
      "standard",
      std,
    );
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send(
      "reviewer",
      "verdict",
      run,
      h.forge.verdict(a, "reviewer-1", { digest: other.message.body.digest }).bytes,
    );
    await waitForRejection(h, run, "executor", "digest_mismatch");
    await noEffect(run);
  });

  it("gate - refuses an expired message", async () => {
    const run = uniqueRun("expired");
    const a = h.forge.assignment(
      h.forge.proposal(run),
      policy.digest,
      "light",
      { reviewers: 0, strategies: [], human: false },
      { issuedAt: Date.now() - 120_000, ttlMs: 60_000 },
    );
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const r = await waitForRejection(h, run, "executor", "message_expired");
    expect(r.body.reason).toMatch(/expired at/);
    await noEffect(run);
  });

  it("gate - refuses a replayed message", async () => {
    const run = uniqueRun("replay");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "full", full);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const v = h.forge.verdict(a, "reviewer-1");
    await h.forge.send("reviewer", "verdict", run, v.bytes, v.message.id);
    // The same signed bytes, stored again under a fresh dedupe id: a replay, not a second reviewer.
    await h.forge.send("reviewer", "verdict", run, v.bytes, `replay-${v.message.id}`);
    const r = await waitForRejection(h, run, "executor", "message_replayed");
    expect(r.body.reason).toMatch(/replay/);
    await waitForRejection(h, run, "executor", "quorum_not_met", 15_000);
    await noEffect(run);
  });

  it("gate - refuses a step routed under another policy digest", async () => {
    const run = uniqueRun("policy");
    const a = h.forge.assignment(h.forge.proposal(run), "0".repeat(64), "light", {
      reviewers: 0,
      strategies: [],
      human: false,
    });
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const r = await waitForRejection(h, run, "executor", "policy_digest_mismatch");
    expect(r.body.reason).toMatch(/enforces gate-test policy/);
    await noEffect(run);
  });

  it("gate - a reviewer key cannot route the step it would approve", async () => {
    const run = uniqueRun("self");
    const a = h.forge.assignment(h.forge.proposal(run), policy.digest, "standard", std, {
      as: "reviewer-2",
      role: "reviewer",
    });
    // The assignment itself is refused (a reviewer cannot route), so nothing can follow from it.
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await waitForRejection(h, run, "executor", "role_mismatch");
    await noEffect(run);
  });

  it("gate - a malformed message is refused with a reason and the next valid one still runs", async () => {
    const run = uniqueRun("malformed");
    await h.forge.publish(
      subjectFor("router", "tier_assigned", run),
      new Uint8Array([0xc1, 0xff, 0x00, 0x13]),
    );
    await waitForRejection(h, run, "executor", "frame_malformed");

    const bad = h.forge.envelope("router", "tier_assigned", {
      run,
      step: 0,
      body: { nonsense: true } as never,
    });
    await h.forge.send("router", "tier_assigned", run, h.forge.seal("router", bad));
    const schema = await waitForRejection(h, run, "executor", "schema_invalid");
    expect(schema.body.reason).toMatch(/body/);

    await h.forge.publish(
      subjectFor("router", "tier_assigned", run),
      new Uint8Array(300 * 1024).fill(7),
    );
    const big = await waitForRejection(h, run, "executor", "frame_oversized");
    expect(big.body.reason).toMatch(/over the limit/);

    const a = h.forge.assignment(h.forge.proposal(run, READ), policy.digest, "light", {
      reviewers: 0,
      strategies: [],
      human: false,
    });
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const exec = await waitForKind(h, run, "step_executed");
    expect(exec.body.outcome).toBe("ok");
  });
});
