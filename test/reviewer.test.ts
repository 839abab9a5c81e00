import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { REVIEW_CLAIMS_BUCKET } from "@trias/bus";
import { decodeFrame, encodeFrame } from "@trias/protocol";
import { waitFor } from "@trias/testing";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import {
  consumerOf,
  startHarness,
  uniqueRun,
  waitForKind,
  waitForRejection,
  type Harness,
} from "./helpers/harness.js";

// One reviewer and nothing else: every message it sees is the one under test. Claims are on
// and the registry holds two reviewer keys, so a step needing one is claimed before it is judged.
const STAND_IN_MS = 500;

describe("reviewer", () => {
  let h: Harness;
  const policyDigest = loadPolicy(shippedPolicyFile("dev")).digest;
  const light = { reviewers: 0, strategies: [], human: false };
  const stdRules = { reviewers: 1, strategies: ["rules" as const], human: false };

  beforeAll(async () => {
    h = await startHarness({
      agents: [
        {
          name: "reviewer-1",
          role: "reviewer",
          env: { TRIAS_REVIEW_CLAIMS: "on", TRIAS_REVIEW_STANDIN_MS: String(STAND_IN_MS) },
        },
      ],
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  /** The same signed frame with one bit of its signature flipped. */
  function tampered(bytes: Uint8Array): Uint8Array {
    const f = decodeFrame(bytes);
    const sig = Uint8Array.from(f.sig);
    sig[0] = (sig[0] ?? 0) ^ 1;
    return encodeFrame({ ...f, sig });
  }

  it("reviewer - judges a step whose tier asks for it, and signs a verdict bound to its digest", async () => {
    const run = uniqueRun("rev");
    const a = h.forge.assignment(h.forge.proposal(run), policyDigest, "standard", stdRules);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const v = await waitForKind(h, run, "verdict");
    expect(v.body.decision).toBe("approve");
    expect(v.body.digest).toBe(a.message.body.digest);
    expect(v.sender).toBe(h.signer("reviewer-1").kid);
  });

  it("reviewer - never receives an assignment that asks for no reviewer: the server filters it out", async () => {
    const consumer = () => consumerOf(h, "reviewer-reviewer-1");
    const before = (await consumer()).delivered.consumer_seq;
    const run = uniqueRun("light");
    const p = h.forge.proposal(run);
    // A light step, then a standard one on the same run: the reviewer takes a run's
    // messages in order, so the verdict on the second shows the first was passed over.
    const lightSeq = await h.forge.send(
      "router",
      "tier_assigned",
      run,
      h.forge.assignment(p, policyDigest, "light", light).bytes,
    );
    const std = h.forge.assignment(p, policyDigest, "standard", stdRules);
    const stdSeq = await h.forge.send("router", "tier_assigned", run, std.bytes);
    await waitForKind(h, run, "verdict");
    const after = (await consumer()).delivered;
    // One delivery since: the standard step's (the last stream message it was handed).
    expect(after.stream_seq).toBe(stdSeq);
    expect(after.stream_seq).toBeGreaterThan(lightSeq);
    expect(after.consumer_seq - before).toBe(1);
  });

  it("reviewer - skips a step that asks for another strategy before checking its signature, and refuses a forged one addressed to it", async () => {
    const run = uniqueRun("skip");
    const p = h.forge.proposal(run);
    const llmOnly = { reviewers: 1, strategies: ["llm" as const], human: false };
    // Same run, so the reviewer takes them in this order: a skipped step would otherwise be
    // refused (bad signature) before the rules one.
    const llmSeq = await h.forge.send(
      "router",
      "tier_assigned",
      run,
      tampered(h.forge.assignment(p, policyDigest, "standard", llmOnly).bytes),
    );
    const stdSeq = await h.forge.send(
      "router",
      "tier_assigned",
      run,
      tampered(h.forge.assignment(p, policyDigest, "standard", stdRules).bytes),
    );
    const r = await waitForRejection(h, run, "reviewer-1", "signature_invalid");
    expect(r.body.seq).toBe(stdSeq);
    const all = await h.rejections(run, "reviewer-1");
    expect(all.map((x) => x.body.seq)).toEqual([stdSeq]);
    expect(all.map((x) => x.body.seq)).not.toContain(llmSeq);
    expect((await h.trace(run)).filter((o) => o.message.kind === "verdict")).toHaveLength(0);
  });

  it("reviewer - stands in for a step another reviewer claimed but did not judge, after the stand-in delay", async () => {
    const run = uniqueRun("standin");
    const a = h.forge.assignment(h.forge.proposal(run), policyDigest, "standard", stdRules);
    // reviewer-2 took the only slot, then went quiet.
    const claims = await h.bus.kv(REVIEW_CLAIMS_BUCKET);
    await claims.create(`${a.message.body.digest}.0`, h.signer("reviewer-2").kid);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const v = await waitForKind(h, run, "verdict");
    expect(v.sender).toBe(h.signer("reviewer-1").kid);
    expect(v.body.digest).toBe(a.message.body.digest);
    // One verdict, stored a stand-in delay (less clock slack) after the assignment.
    const stored = await h.bus.readAll(`trias.*.*.${run}`);
    expect(stored).toHaveLength(2);
    const [assigned, verdict] = stored;
    expect((verdict?.timestampMs ?? 0) - (assigned?.timestampMs ?? 0)).toBeGreaterThanOrEqual(
      STAND_IN_MS - 50,
    );
  });

  it("reviewer - does not judge a step another reviewer claimed and judged", async () => {
    const run = uniqueRun("claimed");
    const a = h.forge.assignment(h.forge.proposal(run), policyDigest, "standard", stdRules);
    const claims = await h.bus.kv(REVIEW_CLAIMS_BUCKET);
    await claims.create(`${a.message.body.digest}.0`, h.signer("reviewer-2").kid);
    const consumer = () => consumerOf(h, "reviewer-reviewer-1");
    const before = await consumer();
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    await h.forge.send("reviewer", "verdict", run, h.forge.verdict(a, "reviewer-2").bytes);
    // The assignment comes back after the stand-in delay; reviewer-1 reads the trace, finds
    // reviewer-2's verdict and lets the step be.
    await waitFor(
      "reviewer-1 to take the assignment a second time and settle it",
      async () => {
        const c = await consumer();
        // Taken twice (the first time it is put back for later), and settled: no more
        // unacknowledged than before it came.
        return c.delivered.consumer_seq - before.delivered.consumer_seq >= 2 &&
          c.num_ack_pending <= before.num_ack_pending
          ? c
          : undefined;
      },
      10_000,
    );
    const verdicts = (await h.trace(run)).filter((o) => o.message.kind === "verdict");
    expect(verdicts.map((o) => o.key.name)).toEqual(["reviewer-2"]);
  });

  // Last: it removes the claims bucket the tests above use.
  it("reviewer - without the claims bucket (a trace set up before it) judges at once and says how to create it", async () => {
    await h.bus.deleteStream(`KV_${REVIEW_CLAIMS_BUCKET}`);
    await h.stack.restart("reviewer-1");
    const log = join(h.stack.opts.logDir, "reviewer-1.log");
    await waitFor("reviewer-1 to start again, without claims", () =>
      readFileSync(log, "utf8").includes('"claims":false') ? true : undefined,
    );
    expect(readFileSync(log, "utf8")).toMatch(/no review claims bucket[^\n]*`trias setup`/);
    const run = uniqueRun("noclaims");
    const a = h.forge.assignment(h.forge.proposal(run), policyDigest, "standard", stdRules);
    await h.forge.send("router", "tier_assigned", run, a.bytes);
    const v = await waitForKind(h, run, "verdict");
    expect(v.sender).toBe(h.signer("reviewer-1").kid);
    // Judged on first sight, not after a stand-in delay.
    const [assigned, verdict] = await h.bus.readAll(`trias.*.*.${run}`);
    expect((verdict?.timestampMs ?? 0) - (assigned?.timestampMs ?? 0)).toBeLessThan(STAND_IN_MS);
  });
});
