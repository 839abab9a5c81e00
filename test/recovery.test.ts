import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import type { Opened } from "@trias/signing";
import { policyVariant, startHarness, uniqueRun, type Harness } from "./helpers/harness.js";

const kinds = <K extends string>(ms: { message: { kind: string } }[], k: K) =>
  ms.filter((o) => o.message.kind === k).map((o) => o.message);

/** A one-step run whose postcondition cannot be read at its first attempt; it completes. */
async function unreadableOnce(h: Harness): Promise<Opened[]> {
  const { run } = await h.client.submit({
    goal: "unreadable once",
    program: "steps",
    input: {
      steps: [
        {
          tool: "flaky.write",
          args: { key: "unread", passFromAttempt: 0, readableFromAttempt: 1 },
        },
      ],
    },
    requestedBy: "test",
  });
  const closed = await h.client.waitForClose([run], 30_000);
  expect(closed.get(run)?.body.outcome).toBe("completed");
  return h.trace(run);
}

describe("recovery", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("recovery - a failed verification retries with backoff and then passes", async () => {
    const { run } = await h.client.submit({
      goal: "flaky once",
      program: "steps",
      input: { steps: [{ tool: "flaky.write", args: { key: "once", passFromAttempt: 1 } }] },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([run], 30_000);
    expect(closed.get(run)?.body.outcome).toBe("completed");
    const trace = await h.trace(run);
    const verified = kinds(trace, "step_verified") as MessageOf<"step_verified">[];
    expect(verified.map((v) => `${v.attempt}:${v.body.verdict}`)).toEqual(["0:failed", "1:passed"]);
    const rec = kinds(trace, "recovery_decided") as MessageOf<"recovery_decided">[];
    expect(rec.map((r) => r.body.action)).toEqual(["retry"]);
    expect(rec[0]?.body.notBefore).toBeGreaterThan(rec[0]?.issuedAt ?? Infinity);
    const executions = kinds(trace, "step_executed") as MessageOf<"step_executed">[];
    expect(executions.map((e) => e.body.effectId)).toEqual([`${run}:0:0`, `${run}:0:1`]);
    // The retry went through routing and review again: a new digest, newly approved.
    expect(new Set(executions.map((e) => e.body.digest)).size).toBe(2);
    expect(closed.get(run)?.body.topology?.entropyBits).toBeGreaterThan(0);
  });

  it("recovery - a tier with lenient verification passes a step whose postconditions cannot be read, and says so in the signed record", async () => {
    // flaky.write is a light step in dev, whose light tier is `verification: lenient`.
    const trace = await unreadableOnce(h);
    const verified = kinds(trace, "step_verified") as MessageOf<"step_verified">[];
    expect(verified.map((v) => `${v.attempt}:${v.body.verdict}`)).toEqual(["0:passed"]);
    const unread = verified[0]?.body.checks.find((c) => c.name === "postconditions readable");
    expect(unread?.ok).toBe(false);
    expect(unread?.detail).toMatch(
      /unreachable.*tolerated: the light tier's verification is lenient/,
    );
    expect(kinds(trace, "recovery_decided")).toHaveLength(0);
  });

  it("recovery - a persistent failure rolls back every earlier step in reverse order and the ledger returns to its start", async () => {
    const start = structuredClone((await h.ledger.read()).state.accounts);
    const { run } = await h.client.submit({
      goal: "three effects then a failure",
      program: "steps",
      input: {
        steps: [
          { tool: "ledger.transfer", args: { from: "alice", to: "bob", amount: 10 } },
          { tool: "ledger.refund", args: { account: "carol", amount: 5, reference: "r-1" } },
          { tool: "ledger.balance", args: { account: "bob" } },
          { tool: "ledger.transfer", args: { from: "bob", to: "dave", amount: 3 } },
          { tool: "flaky.write", args: { key: "never", passFromAttempt: 99 } },
        ],
      },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([run], 40_000);
    expect(closed.get(run)?.body.outcome).toBe("rolled_back");
    const trace = await h.trace(run);
    const rec = kinds(trace, "recovery_decided") as MessageOf<"recovery_decided">[];
    expect(rec.map((r) => r.body.action)).toEqual([
      "retry",
      "rollback",
      "compensate",
      "compensate",
      "compensate",
      "compensate",
      "compensate",
    ]);
    // Reverse order: both attempts of the failing step, step 3's transfer, step 1's refund,
    // step 0's transfer; the read at step 2 has nothing to undo.
    expect(
      rec.filter((r) => r.body.action === "compensate").map((r) => r.body.compensation?.step),
    ).toEqual([4, 4, 3, 1, 0]);
    const comps = (kinds(trace, "step_executed") as MessageOf<"step_executed">[]).filter(
      (e) => e.body.compensationOf !== null,
    );
    expect(comps.map((c) => `${c.step}:${c.body.tool}:${c.body.outcome}`)).toEqual([
      "4:flaky.undo:ok",
      "4:flaky.undo:ok",
      "3:ledger.transfer:ok",
      "1:ledger.transfer:ok",
      "0:ledger.transfer:ok",
    ]);
    const compVerified = (kinds(trace, "step_verified") as MessageOf<"step_verified">[]).filter(
      (v) => v.body.compensationOf !== null,
    );
    expect(compVerified.every((v) => v.body.verdict === "passed")).toBe(true);
    expect((await h.ledger.read()).state.accounts).toEqual(start);
    // A run that had to roll back is not a clean linear run.
    expect(closed.get(run)?.body.topology?.rollbackDensity).toBeGreaterThan(0);
  });

  it("recovery - an effect that cannot be undone escalates to a human instead of rolling back", async () => {
    const { run } = await h.client.submit({
      goal: "close then fail",
      program: "steps",
      input: {
        steps: [
          { tool: "ledger.close_account", args: { account: "dave" } },
          { tool: "flaky.write", args: { key: "esc", passFromAttempt: 99 } },
        ],
      },
      requestedBy: "test",
    });
    const deadline = Date.now() + 30_000;
    let rec: MessageOf<"recovery_decided">[] = [];
    while (Date.now() < deadline) {
      rec = kinds(await h.trace(run), "recovery_decided") as MessageOf<"recovery_decided">[];
      if (rec.some((r) => r.body.action === "escalate")) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(rec.map((r) => r.body.action)).toEqual(["retry", "escalate"]);
    expect(rec[1]?.body.reason).toMatch(/ledger.close_account \(step 0\) cannot be undone/);
    expect(kinds(await h.trace(run), "run_closed")).toEqual([]);
  });

  it("recovery - an execution the trace does not authorise quarantines the run, and nothing more executes", async () => {
    const run = uniqueRun("rogue");
    await h.client.submit(
      { goal: "read", program: "balance-check", input: { account: "alice" }, requestedBy: "test" },
      run,
    );
    await h.client.waitForClose([run], 20_000);
    const run2 = uniqueRun("rogue2");
    await h.client.submit(
      {
        goal: "pay",
        program: "transfer",
        input: { from: "alice", to: "bob", amount: 1 },
        requestedBy: "test",
      },
      run2,
    );
    // A compromised executor key reports an effect for a step nobody approved.
    const fake = h.forge.envelope("executor", "step_executed", {
      run: run2,
      step: 1,
      body: {
        digest: "a".repeat(64),
        tool: "ledger.transfer",
        args: { from: "alice", to: "bob", amount: 999 },
        tier: "standard",
        outcome: "ok",
        result: null,
        error: null,
        approvals: [],
        effectId: `${run2}:1:0`,
        evidence: { assignment: "b".repeat(64), approvals: [] },
        compensationOf: null,
        index: 1,
        total: 2,
      },
    });
    await h.forge.publish(`trias.executor.step_executed.${run2}`, h.forge.seal("executor", fake));
    const closed = await h.client.waitForClose([run2], 30_000);
    expect(closed.get(run2)?.body.outcome).toBe("quarantined");
    const rec = kinds(await h.trace(run2), "recovery_decided") as MessageOf<"recovery_decided">[];
    expect(rec.some((r) => r.body.action === "quarantine")).toBe(true);
  });
});

describe("recovery under strict verification", () => {
  let h: Harness;
  beforeAll(async () => {
    // dev, with its light tier's verification made strict.
    const file = policyVariant("dev", "strict-test", (doc) => {
      doc.tiers["light"] = { ...doc.tiers["light"], verification: "strict" };
    });
    h = await startHarness({ policyFile: file });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("recovery - under strict verification a step whose postconditions cannot be read is uncertain and retried", async () => {
    const trace = await unreadableOnce(h);
    const verified = kinds(trace, "step_verified") as MessageOf<"step_verified">[];
    expect(verified.map((v) => `${v.attempt}:${v.body.verdict}`)).toEqual([
      "0:uncertain",
      "1:passed",
    ]);
    const rec = kinds(trace, "recovery_decided") as MessageOf<"recovery_decided">[];
    expect(rec.map((r) => r.body.action)).toEqual(["retry"]);
  });
});
