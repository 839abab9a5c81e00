import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { EXIT } from "@trias/console";
import { waitFor } from "@trias/testing";
import {
  cliAsAdmin,
  policyVariant,
  startHarness,
  waitForKind,
  waitForRejection,
  type Harness,
} from "./helpers/harness.js";

describe("runs that always end", () => {
  let h: Harness;
  const cli = (args: string[]) => cliAsAdmin(h, args);
  const recoveries = async (run: string) =>
    (await h.trace(run))
      .map((o) => o.message)
      .filter((m): m is MessageOf<"recovery_decided"> => m.kind === "recovery_decided");
  /** A run whose first step cannot be undone and whose second fails until `passFromAttempt`: it escalates. */
  const escalating = async (account: string, passFromAttempt: number) => {
    const { run } = await h.client.submit({
      goal: "close then fail",
      program: "steps",
      input: {
        steps: [
          { tool: "ledger.close_account", args: { account } },
          { tool: "flaky.write", args: { key: `esc-${account}`, passFromAttempt } },
        ],
      },
      requestedBy: "test",
    });
    // Staging asks a human for the close: approved here, so the run gets to its second step.
    await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    expect(cli(["approve", run, "0"]).code).toBe(0);
    await waitFor(
      "the escalation",
      async () =>
        (await recoveries(run)).some((r) => r.body.action === "escalate") ? true : undefined,
      30_000,
    );
    return run;
  };

  beforeAll(async () => {
    h = await startHarness({ environment: "staging" });
    // One more account for a run to close (each escalating run closes one for good).
    await h.ledger.apply("test-open-erin-frank", (s) => {
      s.accounts["erin"] = { balance: 10, open: true };
      s.accounts["frank"] = { balance: 20, open: true };
      return null;
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("runs - cancel stops a run waiting for a human: no further step, closed cancelled with the reason, signed by the person", async () => {
    const { run } = await h.client.submit({
      goal: "close dave",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "test",
    });
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    const listed = cli(["runs", "--status", "open"]);
    expect(listed.out).toMatch(
      new RegExp(`${run} +open .*waiting for a human decision on step ${a.step}`),
    );
    const r = cli(["cancel", run, "--reason", "wrong account"]);
    expect(r.code, r.out).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 20_000);
    expect(closed.body.outcome).toBe("cancelled");
    // Step 0 only read a balance: nothing to compensate.
    expect(closed.body.reason).toBe(
      "cancelled by human-operator: wrong account; nothing that ran needed undoing",
    );
    const order = (await recoveries(run)).at(-1)!;
    expect(order.role).toBe("human");
    expect(order.body.action).toBe("rollback");
    expect(order.body.ends).toBe("cancelled");
    // Nothing was executed for the waiting step, and approving it now is refused.
    expect(
      (await h.trace(run)).some(
        (o) => o.message.kind === "step_executed" && o.message.step === a.step,
      ),
    ).toBe(false);
    expect(cli(["approve", run, String(a.step)]).code).toBe(EXIT.failed);
    expect(cli(["runs", "--status", "cancelled"]).out).toContain(`${run}  cancelled`);
    const again = cli(["cancel", run, "--reason", "twice"]);
    expect(again.code).toBe(EXIT.failed);
    expect(again.out).toMatch(/is cancelled already/);
    expect(cli(["audit", run]).code).toBe(0);
  });

  it("runs - cancel after a transfer ran, while the next step waits for a human: the transfer is compensated, the waiting step never runs, the run closes cancelled", async () => {
    const before = (await h.ledger.read()).state.accounts;
    const { run } = await h.client.submit({
      goal: "pay then close",
      program: "steps",
      input: {
        steps: [
          { tool: "ledger.transfer", args: { from: "alice", to: "bob", amount: 7 } },
          { tool: "ledger.close_account", args: { account: "carol" } },
        ],
      },
      requestedBy: "test",
    });
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    expect(a.step).toBe(1);
    const paid = (await h.ledger.read()).state.accounts;
    expect(paid["alice"]?.balance).toBe((before["alice"]?.balance ?? 0) - 7);
    const r = cli(["cancel", run, "--reason", "paid the wrong person"]);
    expect(r.code, r.out).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("cancelled");
    expect(closed.body.reason).toBe(
      "cancelled by human-operator: paid the wrong person; rolled back: 1 effect(s) compensated in reverse order",
    );
    const after = (await h.ledger.read()).state.accounts;
    expect(after["alice"]?.balance).toBe(before["alice"]?.balance);
    expect(after["bob"]?.balance).toBe(before["bob"]?.balance);
    expect(after["carol"]).toEqual(before["carol"]);
    // A human's approval of the step that waited, sent past the CLI's check, is refused by
    // the executor: the run is being rolled back, nothing of its plan runs any more.
    const stored = await h.bus.readAll(`trias.router.*.${run}`);
    const assignment = stored.find((m) => h.registry.open(m.data).message.step === 1)!.data;
    const forged = h.forge.envelope("human-operator", "verdict", {
      run,
      step: 1,
      attempt: a.attempt,
      body: {
        digest: a.body.digest,
        assignment,
        decision: "approve",
        strategy: "human",
        reasons: ["approve anyway"],
      },
    });
    await h.forge.send("human", "verdict", run, h.forge.seal("human-operator", forged));
    const refused = await waitForRejection(h, run, "executor", "run_quarantined");
    expect(refused.body.reason).toMatch(/being rolled back: no further step executes/);
    expect(
      (await h.trace(run)).some(
        (o) =>
          o.message.kind === "step_executed" &&
          o.message.step === 1 &&
          o.message.body.compensationOf === null,
      ),
    ).toBe(false);
    expect((await h.ledger.read()).state.accounts["carol"]).toEqual(before["carol"]);
    const audit = cli(["audit", run]);
    expect(audit.code, audit.out).toBe(0);
    expect(cli(["cancel", "run-nope", "--reason", "x"]).out).toMatch(/no such run: run-nope/);
  });

  it("runs - an escalated run says why it is open, and a person's retry runs its step again and the run completes", async () => {
    const run = await escalating("carol", 2);
    const listed = cli(["runs", "--status", "open"]);
    expect(listed.out).toMatch(
      new RegExp(`${run} .*escalated, a person decides .*cannot be undone`),
    );
    const r = cli(["resolve", run, "--action", "retry", "--reason", "the flaky store is back"]);
    expect(r.code, r.out).toBe(0);
    await waitForKind(h, run, "step_proposed", 20_000, (m) => m.step === 1 && m.attempt === 2);
    const order = (await recoveries(run)).find((m) => m.role === "human")!;
    expect(order.body.action).toBe("retry");
    expect(order.body.reason).toBe("retry ordered by human-operator: the flaky store is back");
    // The step runs again (its third attempt passes) and the run completes.
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome, closed.body.reason).toBe("completed");
    const runs = await waitForKind(h, run, "step_executed", 5_000, (m) => m.attempt === 2);
    expect(runs.step).toBe(1);
    const audit = cli(["audit", run]);
    expect(audit.code, audit.out).toBe(0);
  });

  it("runs - an escalated run abandoned by a person closes cancelled, one resolved by hand closes resolved, with the reasons; resolve refuses a run that is not escalated", async () => {
    const run = await escalating("bob", 99);
    const r = cli([
      "resolve",
      run,
      "--action",
      "abandon",
      "--reason",
      "fixed in the bank's console",
    ]);
    expect(r.code, r.out).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 20_000);
    expect(closed.body.outcome).toBe("cancelled");
    expect(closed.body.reason).toBe("abandoned by human-operator: fixed in the bank's console");
    const fixed = await escalating("erin", 99);
    const byHand = cli([
      "resolve",
      fixed,
      "--action",
      "resolved",
      "--reason",
      "reopened by the bank",
    ]);
    expect(byHand.code, byHand.out).toBe(0);
    const resolved = await waitForKind(h, fixed, "run_closed", 20_000);
    expect(resolved.body.outcome).toBe("resolved");
    expect(resolved.body.reason).toBe("resolved by hand by human-operator: reopened by the bank");
    expect(cli(["runs", "--status", "resolved"]).out).toContain(`${fixed}  resolved`);
    expect(cli(["audit", fixed]).code).toBe(0);
    const { run: other } = await h.client.submit({
      goal: "read",
      program: "balance-check",
      input: { account: "alice" },
      requestedBy: "test",
    });
    await waitForKind(h, other, "run_closed", 20_000);
    const refused = cli(["resolve", other, "--action", "retry", "--reason", "x"]);
    expect(refused.code).toBe(EXIT.failed);
    expect(refused.out).toMatch(/is completed already/);
  });

  it("runs - a policy rolled out mid-run: the step routed under the old policy is refused by the executor, routed again under the new one, approved again and the run completes", async () => {
    const { run } = await h.client.submit({
      goal: "close dave (his close was cancelled above)",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "test",
    });
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    // The router and the executor come back with a new staging policy (another digest)
    // while the step waits for a person.
    const rolled = policyVariant("staging", "staging", (doc) => {
      doc.tiers["full"]!["humanTimeoutMs"] = 7_200_000;
    });
    await h.stack.restart("router", { TRIAS_POLICY: rolled });
    await h.stack.restart("executor", { TRIAS_POLICY: rolled });
    await h.stack.waitReady();
    // The person approves what they see: the step as routed under the old policy.
    expect(cli(["approve", run, String(a.step)]).code).toBe(0);
    await waitForRejection(h, run, "executor", "policy_digest_mismatch");
    const again = await waitForKind(
      h,
      run,
      "tier_assigned",
      20_000,
      (m) => m.step === a.step && m.attempt === a.attempt + 1,
    );
    expect(again.body.policyDigest).not.toBe(a.body.policyDigest);
    expect(again.body.requires.human).toBe(true);
    const order = (await recoveries(run)).find((m) => m.body.action === "retry")!;
    expect(order.role).toBe("verifier");
    expect(order.body.reason).toMatch(
      /^policy changed mid-run: step was routed under policy [0-9a-f]{12}.*routed again under the current policy \(re-route 1 of 2\)/,
    );
    // Approvals start again: the run waits for the person, and says so.
    expect(cli(["runs", "--status", "open"]).out).toMatch(
      new RegExp(`${run} .*waiting for a human decision on step ${a.step}`),
    );
    expect(cli(["approve", run, String(a.step)]).code).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 20_000);
    expect(closed.body.outcome, closed.body.reason).toBe("completed");
    expect(closed.body.receipt.policy?.digests).toEqual(
      expect.arrayContaining([a.body.policyDigest, again.body.policyDigest]),
    );
    const exec = await waitForKind(h, run, "step_executed", 5_000, (m) => m.step === a.step);
    expect(exec.attempt).toBe(a.attempt + 1);
    const audit = cli(["audit", run]);
    expect(audit.code, audit.out).toBe(0);
  });

  it("runs - a policy rolled out to the executor alone: the step is routed again at most twice, then the run closes with the reason", async () => {
    const { run } = await h.client.submit({
      goal: "close frank",
      program: "close-account",
      input: { account: "frank" },
      requestedBy: "test",
    });
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    const executorOnly = policyVariant("staging", "staging", (doc) => {
      doc.tiers["full"]!["humanTimeoutMs"] = 5_400_000;
    });
    await h.stack.restart("executor", { TRIAS_POLICY: executorOnly });
    await h.stack.waitReady();
    expect(cli(["approve", run, String(a.step)]).code).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 20_000);
    expect(closed.body.outcome).toBe("rejected");
    expect(closed.body.reason).toMatch(
      /^policy changed mid-run: .*re-routed 2 time\(s\) already and still refused \(are the router and the executor on one policy\?\)/,
    );
    expect(
      (await recoveries(run)).filter((m) => m.body.action === "retry").map((m) => m.attempt),
    ).toEqual([a.attempt + 1, a.attempt + 2]);
    expect(
      (await h.trace(run)).some(
        (o) => o.message.kind === "step_executed" && o.message.step === a.step,
      ),
    ).toBe(false);
    const audit = cli(["audit", run]);
    expect(audit.code, audit.out).toBe(0);
    // Later runs are routed and executed under one policy again once the router has it too.
    await h.stack.restart("router", { TRIAS_POLICY: executorOnly });
    await h.stack.waitReady();
    const { run: next } = await h.client.submit({
      goal: "read",
      program: "balance-check",
      input: { account: "alice" },
      requestedBy: "test",
    });
    expect((await waitForKind(h, next, "run_closed", 20_000)).body.outcome).toBe("completed");
  });
});
