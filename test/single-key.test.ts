import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decode, encode, frameRef, subjectFor, type MessageOf } from "@trias/protocol";
import { EFFECTS_BUCKET } from "@trias/runtime";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import { waitFor } from "@trias/testing";
import { startHarness, waitForKind, waitForRejection, type Harness } from "./helpers/harness.js";

// One compromised identity at a time, against real processes, real keys and a real
// nats-server (docs/security.md). Every agent runs but the router: the test holds the
// router's real key and routes each step itself, as a stolen key would.
const LIGHT = { reviewers: 0, strategies: [], human: false };

describe("single key", () => {
  let h: Harness;
  const policy = loadPolicy(shippedPolicyFile("dev"));

  beforeAll(async () => {
    h = await startHarness({
      agents: [
        { name: "proposer", role: "proposer" },
        { name: "reviewer-1", role: "reviewer" },
        { name: "reviewer-2", role: "reviewer" },
        { name: "executor", role: "executor" },
        { name: "verifier", role: "verifier" },
      ],
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function submit(steps: { tool: string; args: Record<string, unknown> }[]) {
    const { run } = await h.client.submit({
      goal: "single key",
      program: "steps",
      input: { steps: steps as never },
      requestedBy: "test",
    });
    return run;
  }

  /** The proposer's stored proposal of a step (attempt), as the router would receive it. */
  async function proposal(run: string, attempt = 0, step = 0) {
    const message = await waitForKind(
      h,
      run,
      "step_proposed",
      20_000,
      (m) => m.attempt === attempt && m.step === step,
    );
    const stored = (await h.bus.readAll(subjectFor("proposer", "step_proposed", run))).find(
      (s) => h.registry.open(s.data).message.id === message.id,
    );
    if (!stored) throw new Error("the proposal is not in the trace");
    return { bytes: stored.data, message };
  }

  /** Route a proposal light with no reviewer, signed with the router's real key. */
  async function routeLight(
    p: Awaited<ReturnType<typeof proposal>>,
    o: { issuedAt?: number; ttlMs?: number } = {},
  ): Promise<void> {
    const a = h.forge.assignment(p, policy.digest, "light", LIGHT, o);
    await h.forge.send("router", "tier_assigned", p.message.run, a.bytes);
  }

  async function kinds(run: string, k: string) {
    return (await h.trace(run)).map((o) => o.message).filter((m) => m.kind === k);
  }

  it("single key - the router's key alone: a batch payout assigned light with no reviewer is refused (tier_downgrade), no money moves, the run ends with the reason", async () => {
    const before = (await h.ledger.read()).state.accounts;
    const run = await submit([
      {
        tool: "ledger.batch_payout",
        args: { batch: "b-downgrade", payouts: [{ account: "bob", amount: 7 }] },
      },
    ]);
    const p = await proposal(run);
    const forged = h.forge.assignment(p, policy.digest, "light", LIGHT);
    await h.forge.send("router", "tier_assigned", run, forged.bytes);

    const r = await waitForRejection(h, run, "executor", "tier_downgrade");
    expect(r.body.reason).toMatch(/assigned light .*ledger\.batch_payout at least full/);
    const closed = await waitForKind(h, run, "run_closed");
    expect(closed.body.reason).toMatch(/tier_downgrade/);
    expect(["quarantined", "rejected"]).toContain(closed.body.outcome);
    // Recorded once, by the agent it was addressed to.
    expect((await h.rejections(run)).filter((x) => x.body.code === "tier_downgrade")).toHaveLength(
      1,
    );
    expect(await kinds(run, "step_executed")).toHaveLength(0);
    const { state } = await h.ledger.read();
    expect(Object.keys(state.applied).filter((k) => k.startsWith(`${run}:`))).toEqual([]);
    expect(state.accounts).toEqual(before);
  });

  it("single key - the router's key alone: a retry routed below the run's floor gets past the executor but not the verifier, which undoes it, quarantines and closes the run", async () => {
    const key = `floor-${Date.now().toString(36)}`;
    const run = await submit([{ tool: "flaky.write", args: { key, passFromAttempt: 1 } }]);
    // Attempt 0 routed light, as the policy says; its postcondition fails.
    const p0 = await proposal(run, 0);
    await routeLight(p0);
    // The retry must be at least the policy's after-failure tier; the stolen key says light.
    // The executor cannot see the failure without reading the run: it runs the step.
    const p1 = await proposal(run, 1);
    await routeLight(p1);
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("quarantined");
    expect(closed.body.reason).toMatch(/without valid authorisation/);
    const trace = (await h.trace(run)).map((o) => o.message);
    const verified = trace.filter(
      (m): m is MessageOf<"step_verified"> =>
        m.kind === "step_verified" && m.body.compensationOf === null && m.attempt === 1,
    );
    expect(verified[0]?.body.checks.find((c) => !c.ok)?.name).toBe("tier is at least the policy's");
    const actions = trace
      .filter((m): m is MessageOf<"recovery_decided"> => m.kind === "recovery_decided")
      .map((m) => m.body.action);
    expect(actions).toEqual(["retry", "compensate", "quarantine"]);
    const comps = trace.filter(
      (m): m is MessageOf<"step_executed"> =>
        m.kind === "step_executed" && m.body.compensationOf !== null,
    );
    expect(comps.map((c) => `${c.body.tool}:${c.body.outcome}:${c.body.effectId}`)).toEqual([
      `flaky.undo:ok:${run}:0:1:c`,
    ]);
    expect((await h.ledger.read()).state.applied[`${run}:0:1:c`]).toBeDefined();
  });

  /** A run whose step 0 (flaky.write, light) has executed and passed; step 1 is left unrouted, so the run stays open. */
  async function oneEffect(): Promise<{ run: string; frame: Uint8Array; key: string }> {
    const key = `comp-${Date.now().toString(36)}`;
    const run = await submit([
      { tool: "flaky.write", args: { key, passFromAttempt: 0 } },
      { tool: "ledger.balance", args: { account: "bob" } },
    ]);
    const p = await proposal(run);
    await routeLight(p);
    await waitForKind(h, run, "step_verified");
    await proposal(run, 0, 1);
    const [stored] = await h.bus.readAll(subjectFor("executor", "step_executed", run));
    if (!stored) throw new Error("no execution");
    return { run, frame: stored.data, key };
  }

  function order(
    run: string,
    frame: Uint8Array,
    compensation: { tool: string; args: Record<string, unknown> },
  ): Uint8Array {
    const executed = h.registry.open(frame).message as MessageOf<"step_executed">;
    const m = h.forge.envelope("verifier", "recovery_decided", {
      run,
      step: 0,
      body: {
        digest: executed.body.digest,
        action: "compensate",
        reason: "test",
        compensation: { step: 0, of: executed.body.digest, ...compensation } as never,
        avoid: [],
        nextAttempt: 0,
        notBefore: null,
        evidence: frameRef(frame),
      },
    });
    return h.forge.seal("verifier", m);
  }

  it("single key - the verifier's key alone: compensation orders under different ids for one effect apply it once", async () => {
    const { run, frame, key } = await oneEffect();
    const subject = subjectFor("verifier", "recovery_decided", run);
    const undo = { tool: "flaky.undo", args: { key, attempt: 0 } };
    // Three orders under three message ids, at once: the first applies the undo; the others
    // are refused, as already applied, or as the run's by then quarantined (the verifier
    // quarantines a compensation it did not order itself).
    await Promise.all([1, 2, 3].map(() => h.forge.publish(subject, order(run, frame, undo))));
    const refused = await waitFor(
      "both later orders refused",
      async () => {
        const r = await h.rejections(run, "executor");
        return r.length >= 2 ? r : undefined;
      },
      20_000,
    );
    expect(refused).toHaveLength(2);
    for (const r of refused) expect(["already_executed", "run_quarantined"]).toContain(r.body.code);
    const already = refused.find((r) => r.body.code === "already_executed");
    if (already) expect(already.body.reason).toMatch(/compensated at most once/);
    const comps = (await h.trace(run))
      .map((o) => o.message)
      .filter(
        (m): m is MessageOf<"step_executed"> =>
          m.kind === "step_executed" && m.body.compensationOf !== null,
      );
    expect(comps).toHaveLength(1);
    expect((await h.ledger.read()).state.applied[`${run}:0:0:c`]).toBeDefined();
  });

  it("single key - the verifier's key alone: an order for anything but the effect's declared undo is refused and moves nothing", async () => {
    const before = (await h.ledger.read()).state.accounts;
    const { run, frame } = await oneEffect();
    await h.forge.publish(
      subjectFor("verifier", "recovery_decided", run),
      order(run, frame, {
        tool: "ledger.transfer",
        args: { from: "treasury", to: "mallory", amount: 500 },
      }),
    );
    const r = await waitForRejection(h, run, "executor", "scope_denied");
    expect(r.body.reason).toMatch(/not the compensation flaky\.write declares/);
    expect((await h.ledger.read()).state.accounts).toEqual(before);
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(1);
  });

  it("single key - the proposer's key alone: a step proposed for a closed run (routed as any router would) is refused by the executor; nothing runs", async () => {
    const key = `closed-${Date.now().toString(36)}`;
    const run = await submit([{ tool: "flaky.write", args: { key, passFromAttempt: 0 } }]);
    const p0 = await proposal(run, 0);
    await routeLight(p0);
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("completed");

    // A second step of the closed run, signed with the proposer's real key; the router routes
    // what it is given (it keeps no record of closed runs), here light as the policy says.
    const extra = h.forge.proposal(run, {
      step: 1,
      tool: "flaky.write",
      args: { key: `${key}-extra`, passFromAttempt: 0 },
      index: 1,
      total: 2,
    });
    await h.forge.send("proposer", "step_proposed", run, extra.bytes);
    await routeLight(extra);
    const r = await waitForRejection(h, run, "executor", "run_closed");
    expect(r.body.reason).toMatch(/nothing may follow run_closed/);
    const executed = await h.bus.readAll(subjectFor("executor", "step_executed", run));
    expect(executed).toHaveLength(1);
    expect(await kinds(run, "run_closed")).toHaveLength(1);
  });

  it("crash between announcing an effect and recording it: the redelivery records the trace's frame, so the effect's compensation is accepted", async () => {
    const { run, frame, key } = await oneEffect();
    // As a process that died after its step_executed reached the server but before its record
    // did leaves it: the record says "started".
    const effects = await h.bus.kv(EFFECTS_BUCKET);
    await effects.put(`${run}.0.0`, encode({ status: "started", at: Date.now(), by: "executor" }));
    // The executor starts again, and the step's assignment comes again, as a redelivery would
    // bring it: issued before this executor started, so it may have run unseen. The tool runs again under the same effect id
    // (applies nothing twice) and its re-signed announcement is a duplicate for the server.
    await h.stack.restart("executor");
    const p = await proposal(run);
    const ago = 10 * 60_000;
    await routeLight(p, { issuedAt: Date.now() - ago, ttlMs: 2 * ago });
    const record = await waitFor(
      "the record done again",
      async () => {
        const e = await effects.get(`${run}.0.0`);
        const r =
          e && e.value.length > 0
            ? (decode(e.value) as { status: string; frame?: Uint8Array })
            : null;
        return r?.status === "done" ? r : undefined;
      },
      20_000,
    );
    expect(Buffer.from(record.frame ?? []).equals(Buffer.from(frame))).toBe(true);
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(1);

    // The verifier's order names the trace's frame by digest: it matches, the undo runs.
    await h.forge.publish(
      subjectFor("verifier", "recovery_decided", run),
      order(run, frame, { tool: "flaky.undo", args: { key, attempt: 0 } }),
    );
    await waitFor(
      "the compensation",
      async () =>
        (await h.bus.readAll(subjectFor("executor", "step_executed", run))).length === 2 ||
        undefined,
      20_000,
    );
    expect((await h.ledger.read()).state.applied[`${run}:0:0:c`]).toBeDefined();
  });
});
