import { describe, expect, it } from "vitest";
import {
  PHASES,
  RUN_EVENTS,
  TRANSITIONS,
  advance,
  foldRun,
  initialRunState,
  reduce,
  afterClose,
  personOnly,
  type RunState,
  type TraceEvent,
  type Violation,
} from "./index.js";
import { TraceBuilder } from "./test-support.js";

/** The state with its violation record removed: what "changes nothing else" compares. */
function withoutViolations(s: RunState): RunState {
  return { ...s, violations: [], counts: { ...s.counts, violations: 0 } };
}

/**
 * Folding the trace with the illegal event must equal folding it without, plus exactly one
 * violation naming that event.
 */
function expectOnlyViolation(
  events: TraceEvent[],
  illegal: TraceEvent,
  reason?: RegExp,
  code: Violation["code"] = "illegal_transition",
): RunState {
  const withIt = foldRun(events);
  const without = foldRun(events.filter((e) => e !== illegal));
  expect(withIt.violations).toHaveLength(1);
  const v = withIt.violations[0];
  expect(v?.seq).toBe(illegal.seq);
  expect(v?.kind).toBe(illegal.message.kind);
  expect(v?.code).toBe(code);
  if (reason) expect(v?.reason).toMatch(reason);
  expect(withoutViolations(withIt)).toEqual(without);
  return withIt;
}

describe("runstate - behaviour", () => {
  it("folds a light, a standard and a full step to completion", () => {
    const t = TraceBuilder.linear("run-tiers", 3, ["light", "standard", "full"]);
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.status).toBe("closed");
    expect(s.outcome).toBe("completed");
    expect(s.program).toBe("demo");
    expect(s.steps.map((x) => x.tier)).toEqual(["light", "standard", "full"]);
    expect(s.steps.map((x) => x.approvals.length)).toEqual([0, 1, 3]);
    expect(s.steps.map((x) => x.verification?.verdict)).toEqual(["passed", "passed", "passed"]);
    expect(s.steps.every((x) => x.phase === "passed" && x.execution?.outcome === "ok")).toBe(true);
    expect(s.steps[2]?.approvals.map((a) => a.kid)).toEqual([
      "reviewer-1:test",
      "reviewer-2:test",
      "human:test",
    ]);
    expect(s.effects).toHaveLength(3);
    expect(s.lastSeq).toBe(t.events[t.events.length - 1]?.seq);
    expect(s.counts).toMatchObject({
      proposals: 3,
      executions: 3,
      passed: 3,
      approvals: 4,
      violations: 0,
    });
    expect(s.closed?.receipt.events).toBe(t.events.length - 1);
    expect(s.transitions.map((x) => `${x.from}->${x.to}`)).toEqual([
      "new->open",
      ...[0, 1, 2].flatMap((i) => [
        i === 0 ? "open->proposed" : "passed->proposed",
        "proposed->routed",
        "routed->approved",
        "approved->executed",
        "executed->passed",
      ]),
      "passed->closed",
    ]);
  });

  it("is deterministic: replaying the same trace, stepwise or at once, gives deep-equal state", () => {
    const t = TraceBuilder.linear("run-replay", 4);
    t.propose(9, 9); // an illegal tail, so violations are replayed too
    const a = foldRun(t.events);
    const b = foldRun(t.events);
    let c = initialRunState("run-replay");
    for (const ev of t.events) c = reduce(c, ev);
    expect(b).toEqual(a);
    expect(c).toEqual(a);
    expect(JSON.stringify(c)).toBe(JSON.stringify(a));
  });

  it("reduce never mutates its input state", () => {
    const t = TraceBuilder.linear("run-pure", 2);
    const half = foldRun(t.events.slice(0, 5));
    const snapshot = structuredClone(half);
    reduce(half, t.events[5] as TraceEvent);
    expect(half).toEqual(snapshot);
  });

  it("records a skipped step and changes nothing else", () => {
    const t = new TraceBuilder("run-skip");
    t.submit();
    t.step(0, 4, "light");
    const skip = t.propose(2, 4);
    t.step(1, 4, "light");
    const s = expectOnlyViolation(t.events, skip, /skipped or reordered/);
    expect(s.current).toBe(1);
  });

  it("records a reordered step (next proposal before this one is verified)", () => {
    const t = new TraceBuilder("run-reorder");
    t.submit();
    t.propose(0, 3);
    t.assign(0, "light");
    t.execute(0);
    const early = t.propose(1, 3);
    t.verify(0);
    expectOnlyViolation(t.events, early, /not verified passed/);
  });

  it("records a duplicated event (same message again) and an out-of-order seq", () => {
    const t = new TraceBuilder("run-dup");
    t.submit();
    t.step(0, 2, "standard");
    const original = t.events[3] as TraceEvent; // the verdict
    const dup: TraceEvent = { ...original, seq: 1000 };
    const events = [...t.events, dup];
    expectOnlyViolation(events, dup, /duplicate/);

    const stale: TraceEvent = { ...(t.events[1] as TraceEvent), seq: 2 };
    const s = foldRun([...t.events, stale]);
    expect(s.violations.map((v) => v.reason)).toEqual([
      expect.stringMatching(/out of stream order/),
    ]);
  });

  it("records a step executed without approval", () => {
    const t = new TraceBuilder("run-noquorum");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "standard");
    const exec = t.execute(0);
    const s = expectOnlyViolation(t.events, exec, /never approved \(0 of 1 approvals\)/);
    expect(s.phase).toBe("routed");
    expect(s.effects).toEqual([]);
  });

  it("records an execution before the human approval a full step requires", () => {
    const t = new TraceBuilder("run-nohuman");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.verdict(0, "reviewer-1", "approve", "rules");
    t.verdict(0, "reviewer-2", "approve", "llm");
    const exec = t.execute(0);
    expectOnlyViolation(t.events, exec, /no human approval/);
  });

  it("counts one reviewer key once, and refuses a machine key posing as human", () => {
    const t = new TraceBuilder("run-quorum");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.verdict(0, "reviewer-1", "approve", "rules");
    const twice = t.verdict(0, "reviewer-1", "approve", "llm");
    expectOnlyViolation(t.events, twice, /distinct keys/);
    const fake = t.verdict(0, "reviewer-2", "approve", "human");
    expect(foldRun(t.events).violations.map((v) => v.seq)).toEqual([twice.seq, fake.seq]);
  });

  it("records anything after run_closed, but still records refusals", () => {
    const t = TraceBuilder.linear("run-after-close", 1);
    const after = t.propose(1, 2);
    expectOnlyViolation(t.events, after, /nothing may follow run_closed/, "run_closed");
    t.events.pop();
    t.reject("executor", "run is closed");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.rejections).toHaveLength(1);
    expect(s.status).toBe("closed");
  });

  it("runstate - afterClose: a sealed run takes only refusals and verdicts (then judged late)", () => {
    const sealed = {
      closed: {
        seq: 9,
        outcome: "completed" as const,
        reason: "",
        steps: 1,
        receipt: null as never,
      },
    };
    const table: [Pick<RunState, "closed" | "status">, string, RegExp | null][] = [
      [{ closed: null, status: "open" }, "step_executed", null],
      [{ closed: null, status: "quarantined" }, "step_executed", null],
      [{ ...sealed, status: "closed" }, "message_rejected", null],
      [{ ...sealed, status: "closed" }, "verdict", null],
      [{ ...sealed, status: "closed" }, "step_executed", /closed at seq 9: nothing may follow/],
      [{ ...sealed, status: "closed" }, "recovery_decided", /a recovery_decided is refused/],
      [{ ...sealed, status: "closed" }, "run_closed", /nothing may follow run_closed/],
      [{ ...sealed, status: "closed" }, "task_submitted", /nothing may follow/],
      [{ ...sealed, status: "quarantined" }, "step_proposed", /quarantined and sealed/],
      [{ ...sealed, status: "quarantined" }, "verdict", null],
    ];
    for (const [state, kind, want] of table) {
      const got = afterClose(state, kind);
      if (want === null) expect(got, kind).toBeNull();
      else expect(got, kind).toMatch(want);
    }
  });

  it("runstate - a slow verdict after a quarantined run is sealed is recorded late, not illegal", () => {
    const t = new TraceBuilder("run-quarantine-late");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.approveFor(0);
    t.execute(0);
    t.verify(0, "failed");
    t.recover(0, "quarantine");
    t.close("quarantined");
    t.verdict(0, "reviewer-3");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.steps[0]?.late).toEqual([expect.objectContaining({ kid: "reviewer-3:test" })]);
  });

  it("halts a quarantined run: any later message is illegal, except one sealing run_closed and refusals", () => {
    const t = new TraceBuilder("run-quarantine");
    t.submit();
    t.step(0, 3, "light", "failed");
    t.recover(0, "quarantine");
    const exec = t.execute(0, { attempt: 1 });
    const prop = t.propose(1, 3);
    let s = foldRun(t.events);
    expect(s.status).toBe("quarantined");
    expect(s.outcome).toBe("quarantined");
    expect(s.violations.map((v) => [v.seq, v.reason])).toEqual([
      [exec.seq, expect.stringMatching(/quarantined/)],
      [prop.seq, expect.stringMatching(/quarantined/)],
    ]);
    t.reject("executor", "run_quarantined");
    t.close("quarantined");
    const again = t.close("quarantined");
    s = foldRun(t.events);
    expect(s.violations.map((v) => v.seq)).toEqual([exec.seq, prop.seq, again.seq]);
    expect(s.closed?.outcome).toBe("quarantined");
    expect(s.status).toBe("quarantined");
    expect(s.rejections).toHaveLength(1);
  });

  it("records message_rejected events and changes nothing else", () => {
    const t = new TraceBuilder("run-rejections");
    t.submit();
    t.propose(0, 1);
    const r = t.reject("router", "forged signature");
    t.assign(0, "light");
    t.execute(0);
    t.verify(0);
    t.close();
    const a = foldRun(t.events);
    const b = foldRun(t.events.filter((e) => e !== r));
    expect(a.rejections).toEqual([
      expect.objectContaining({ seq: r.seq, reason: "forged signature", by: "router" }),
    ]);
    expect(a.violations).toEqual([]);
    expect({
      ...a,
      rejections: [],
      counts: { ...a.counts, rejections: 0, applied: a.counts.applied - 1 },
      messageIds: b.messageIds,
    }).toEqual(b);
  });

  it.each([
    ["the current proposed step", 0, 0, "proposed", true],
    ["another step", 1, 0, "proposed", false],
    ["an older attempt", 0, 1, "proposed", false],
    ["a step already routed", 0, 0, "routed", false],
  ] as const)(
    "step_held: a hold of %s is legal only while it waits for the router",
    (_what, step, attemptBehind, phase, legal) => {
      const t = new TraceBuilder(`run-held-${step}-${attemptBehind}-${phase}`);
      t.submit();
      t.propose(0, 2, { attempt: attemptBehind });
      if (phase === "routed") t.assign(0, "light");
      const hold = t.emit("router", "step_held", step, 0, {
        tool: "ledger.transfer",
        reason: "1 call per 1000 ms",
        until: 2_000_000_000_000,
      });
      const s = foldRun(t.events);
      if (legal) {
        expect(s.violations).toEqual([]);
        expect(s.held).toEqual(
          expect.objectContaining({ step: 0, attempt: 0, tool: "ledger.transfer", seq: hold.seq }),
        );
        expect(s.phase).toBe("proposed");
        // Routed, the step has moved on: the hold no longer explains the wait.
        t.assign(0, "light");
        expect(foldRun(t.events).held).toBeNull();
      } else {
        expect(s.violations.map((v) => v.seq)).toEqual([hold.seq]);
        expect(s.held).toBeNull();
      }
    },
  );

  it("never counts uncertain as passed", () => {
    const t = new TraceBuilder("run-uncertain");
    t.submit();
    t.step(0, 2, "light", "uncertain");
    const next = t.propose(1, 2);
    const s = expectOnlyViolation(t.events, next, /not verified passed/);
    expect(s.phase).toBe("failed");
    t.events.pop();
    const close = t.close("completed");
    expectOnlyViolation(t.events, close, /close_completed/);
  });

  it("does not close a run as completed before its last step", () => {
    const t = new TraceBuilder("run-short");
    t.submit();
    t.step(0, 3, "light");
    const close = t.close("completed");
    expectOnlyViolation(t.events, close, /completed after step 0 of a 3-step plan/);
  });

  it("refuses bindings that do not hold: a wrong digest, other arguments, a downgrade", () => {
    const t = new TraceBuilder("run-bind");
    t.submit();
    t.propose(0, 1);
    const wrong = t.assign(0, "light", { digest: "f".repeat(64) });
    expectOnlyViolation(t.events, wrong, /does not bind/);

    const u = new TraceBuilder("run-args");
    u.submit();
    u.propose(0, 1);
    u.assign(0, "light");
    const ctx = u.ctx(0);
    ctx.args = { from: "a", to: "mallory", amount: 1000 };
    const exec = u.execute(0);
    expectOnlyViolation(u.events, exec, /arguments other than the approved/);

    const d = new TraceBuilder("run-downgrade");
    d.submit();
    d.propose(0, 1);
    d.assign(0, "full");
    d.approveFor(0);
    d.execute(0);
    d.verify(0, "failed");
    d.recover(0, "replan", { nextAttempt: 1 });
    d.propose(0, 1, {
      attempt: 1,
      replanOf: d.ctx(0).digest,
      args: { from: "a", to: "b", amount: 0.5 },
    });
    const down = d.assign(0, "standard");
    expectOnlyViolation(d.events, down, /tier downgrade: step 0 was full, now standard/);
  });

  it("retries a failed step under the same approval, then continues", () => {
    const t = new TraceBuilder("run-retry");
    t.submit();
    t.step(0, 2, "standard", "failed");
    t.recover(0, "retry", { nextAttempt: 1 });
    t.execute(0, { attempt: 1 });
    t.verify(0, "passed", 1);
    t.step(1, 2, "light");
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
    expect(s.steps[0]?.attempt).toBe(1);
    expect(s.steps[0]?.history).toEqual([
      expect.objectContaining({ attempt: 0, execution: "ok", verdict: "failed" }),
    ]);
    expect(s.counts.retries).toBe(1);
  });

  it("refuses a retry that re-runs an action on the avoid list unchanged", () => {
    const t = new TraceBuilder("run-avoid");
    t.submit();
    t.step(0, 1, "light", "failed");
    t.recover(0, "retry", { nextAttempt: 1, avoid: [t.ctx(0).digest] });
    const again = t.execute(0, { attempt: 1 });
    expectOnlyViolation(t.events, again, /avoid list/);
    t.events.pop();
    const same = t.propose(0, 1, { attempt: 1 });
    expectOnlyViolation(t.events, same, /avoid list/);
  });

  it("replans a failed step through review again", () => {
    const t = new TraceBuilder("run-replan");
    t.submit();
    t.step(0, 2, "standard", "incomplete");
    const old = t.ctx(0).digest;
    t.recover(0, "replan", { nextAttempt: 1, avoid: [old] });
    const bad = t.propose(0, 2, { attempt: 1, replanOf: null, args: { x: 1 } });
    expectOnlyViolation(t.events, bad, /must name the proposal it replaces/);
    t.events.pop();
    t.propose(0, 2, {
      attempt: 1,
      replanOf: old,
      args: { from: "a", to: "b", amount: 2, memo: "smaller" },
    });
    t.assign(0, "standard");
    t.approveFor(0);
    t.execute(0);
    t.verify(0);
    t.step(1, 2, "light");
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
    expect(s.steps[0]?.replanOf).toBe(old);
    expect(s.counts.replans).toBe(1);
  });

  it("rolls back every completed step in reverse order, each compensation ordered and verified", () => {
    const t = new TraceBuilder("run-rollback");
    t.submit();
    for (let i = 0; i < 3; i++) t.step(i, 4, "standard");
    t.step(3, 4, "standard", "failed");
    t.recover(3, "rollback");
    for (const i of [3, 2, 1, 0]) t.compensate(i);
    t.close("rolled_back");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("rolled_back");
    expect(s.steps.map((x) => x.compensated)).toEqual([true, true, true, true]);
    expect(s.effects.every((e) => e.compensated && e.compensations.length === 1)).toBe(true);
    expect(s.counts.compensations).toBe(4);
  });

  it("rolls back on the rollback order alone, and refuses compensations out of reverse order", () => {
    const t = new TraceBuilder("run-rollback-order");
    t.submit();
    for (let i = 0; i < 3; i++) t.step(i, 4, "light");
    t.step(3, 4, "light", "failed");
    t.recover(3, "rollback");
    t.compensate(3, { order: false });
    t.compensate(1, { order: false }); // step 2 skipped: allowed (not every tool has an undo)
    const before = t.events.length;
    t.compensate(2, { order: false }); // but now 2 is out of order
    const late = t.events[before] as TraceEvent;
    const s = foldRun(t.events);
    expect(s.violations.map((v) => v.seq)).toEqual([late.seq, late.seq + 1]);
    expect(s.violations[0]?.reason).toMatch(/out of reverse order/);
    expect(s.steps.map((x) => x.compensated)).toEqual([false, true, false, true]);
  });

  it("refuses a compensation without a signed order, and a close while one is in flight", () => {
    const t = new TraceBuilder("run-comp-order");
    t.submit();
    t.step(0, 2, "light");
    t.step(1, 2, "light", "failed");
    t.recover(1, "escalate");
    const n = t.events.length;
    t.compensate(1, { order: false });
    const s = foldRun(t.events);
    expect(s.violations[0]?.seq).toBe(t.events[n]?.seq);
    expect(s.phase).toBe("escalated");

    const u = new TraceBuilder("run-comp-close");
    u.submit();
    u.step(0, 1, "light", "failed");
    u.recover(0, "compensate", {
      compensation: {
        step: 0,
        of: u.ctx(0).digest,
        tool: "ledger.transfer",
        args: { from: "b", to: "a", amount: 1 },
      },
    });
    const close = u.close("failed");
    expectOnlyViolation(u.events, close, /in flight/);
  });

  it("lets only a human decide an escalated run", () => {
    const t = new TraceBuilder("run-escalate");
    t.submit();
    t.step(0, 1, "light", "failed");
    t.recover(0, "escalate");
    const bot = t.recover(0, "retry", { nextAttempt: 1 });
    expectOnlyViolation(t.events, bot, /only a human decides/);
    t.events.pop();
    t.recover(0, "retry", { nextAttempt: 1, who: "human" });
    t.execute(0, { attempt: 1 });
    t.verify(0, "passed", 1);
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
  });

  it("runstate - personOnly: the orders only a person may give, and which orders may end a run", () => {
    const table: [
      Parameters<typeof personOnly>[0],
      Parameters<typeof personOnly>[1],
      Parameters<typeof personOnly>[2],
      Parameters<typeof personOnly>[3],
      RegExp | null,
    ][] = [
      ["failed", "retry", "verifier", undefined, null],
      ["escalated", "retry", "verifier", undefined, /only a human decides/],
      ["escalated", "quarantine", "verifier", undefined, null],
      ["escalated", "retry", "human", undefined, null],
      ["routed", "rollback", "verifier", undefined, /only a person may roll back/],
      ["routed", "rollback", "human", "cancelled", null],
      ["failed", "rollback", "verifier", undefined, null],
      ["routed", "quarantine", "human", "cancelled", null],
      ["escalated", "quarantine", "human", "resolved", null],
      ["routed", "quarantine", "verifier", "cancelled", /only a person may end a run as cancelled/],
      ["escalated", "retry", "human", "resolved", /a retry cannot end a run/],
    ];
    for (const [phase, event, role, ends, want] of table) {
      const got = personOnly(phase, event, role, ends);
      const label = `${role} ${event} in ${phase} ending ${String(ends)}`;
      if (want === null) expect(got, label).toBeNull();
      else expect(got, label).toMatch(want);
    }
  });

  it("runstate - a person's cancel while a step waits rolls back what ran and closes as cancelled", () => {
    const t = new TraceBuilder("run-cancel-rollback");
    t.submit();
    t.step(0, 2, "light");
    t.propose(1, 2);
    t.assign(1, "full");
    t.recover(1, "rollback", { who: "human", nextAttempt: 0, ends: "cancelled" });
    t.compensate(0);
    t.close("cancelled");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("cancelled");
    expect(s.status).toBe("closed");
    expect(s.ended).toEqual(
      expect.objectContaining({ outcome: "cancelled", reason: "test rollback" }),
    );
    expect(s.effects[0]?.compensated).toBe(true);
    // Once rolled back, the step that waited may not execute.
    const u = new TraceBuilder("run-cancel-late-exec");
    u.submit();
    u.step(0, 2, "light");
    u.propose(1, 2);
    u.assign(1, "standard");
    u.recover(1, "rollback", { who: "human", nextAttempt: 0, ends: "cancelled" });
    u.verdict(1, "reviewer-1");
    expectOnlyViolation(u.events, u.execute(1), /not legal in phase rolling_back/);
  });

  it("runstate - a run closes as cancelled or resolved only after a person's order says so", () => {
    const t = new TraceBuilder("run-cancel-halt");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.recover(0, "quarantine", { who: "human", nextAttempt: 0, ends: "cancelled" });
    t.close("cancelled");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("cancelled");

    const u = new TraceBuilder("run-resolved-lie");
    u.submit();
    u.step(0, 1, "light", "failed");
    u.recover(0, "escalate");
    u.recover(0, "quarantine", { who: "human", nextAttempt: 0, ends: "cancelled" });
    expectOnlyViolation(u.events, u.close("resolved"), /no person's signed order ended it so/);

    const v = new TraceBuilder("run-closed-as-cancelled-by-verifier");
    v.submit();
    v.step(0, 1, "light", "failed");
    v.recover(0, "quarantine");
    expectOnlyViolation(v.events, v.close("cancelled"), /there is none/);
  });

  it("runstate - a person's retry of an escalated step lifts the escalation's avoid list for that step", () => {
    const t = new TraceBuilder("run-escalate-retry");
    t.submit();
    t.step(0, 1, "light", "failed");
    t.recover(0, "escalate", { nextAttempt: 0, avoid: [t.ctx(0).digest] });
    // Without the person's retry, proposing the same action again is refused.
    const u = new TraceBuilder("run-escalate-replan");
    u.submit();
    u.step(0, 1, "light", "failed");
    u.recover(0, "escalate", { nextAttempt: 0, avoid: [u.ctx(0).digest] });
    u.recover(0, "replan", { who: "human", nextAttempt: 1 });
    const again = u.propose(0, 1, { attempt: 1, replanOf: u.ctx(0).digest });
    expectOnlyViolation(u.events, again, /avoid list/);

    t.recover(0, "retry", { who: "human", nextAttempt: 1 });
    t.propose(0, 1, { attempt: 1 });
    t.assign(0, "light");
    t.execute(0);
    t.verify(0, "passed");
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
  });

  it("runstate - a step the executor refused as routed under another policy is routed again at its next attempt, and only then", () => {
    const refuse = (t: TraceBuilder, seq: number | null) =>
      t.emit("executor", "message_rejected", 0, 0, {
        code: "policy_digest_mismatch",
        reason: "step was routed under policy aaaa but this executor enforces bbbb",
        subject: `trias.human.verdict.${t.run}`,
        seq,
        messageId: null,
        sender: null,
        by: "executor",
      });
    const t = new TraceBuilder("run-reroute");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    const waiting = t.verdict(0, "human");
    // Without the executor's refusal a retry of a step never executed is refused.
    const bare = new TraceBuilder("run-reroute-bare");
    bare.submit();
    bare.propose(0, 1);
    bare.assign(0, "full");
    expectOnlyViolation(
      bare.events,
      bare.recover(0, "retry", { nextAttempt: 1 }),
      /needs the executor's policy_digest_mismatch refusal/,
    );
    refuse(t, waiting.seq);
    t.recover(0, "retry", { nextAttempt: 1 });
    t.propose(0, 1, { attempt: 1 });
    t.assign(0, "full");
    t.approveFor(0);
    t.execute(0);
    t.verify(0);
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
    expect(s.counts.reroutes).toBe(1);
    expect(s.transitions.map((x) => x.to)).toContain("retrying");
    expect(s.steps[0]?.history).toEqual([
      expect.objectContaining({ attempt: 0, execution: null, verdict: null }),
    ]);
  });

  it("accepts a slow reviewer's verdict after the fact without changing any phase", () => {
    const t = new TraceBuilder("run-late");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "standard");
    t.verdict(0, "reviewer-1");
    t.execute(0);
    t.verdict(0, "reviewer-2", "reject");
    t.verify(0);
    t.close();
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("completed");
    expect(s.steps[0]?.late).toEqual([
      expect.objectContaining({ kid: "reviewer-2:test", decision: "reject" }),
    ]);
  });

  it("accepts a slow reviewer's verdict after the run closed, as late, and nothing else", () => {
    const t = new TraceBuilder("run-late-close");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "standard");
    t.verdict(0, "reviewer-1");
    t.execute(0);
    t.verify(0);
    t.close();
    t.verdict(0, "reviewer-2");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.status).toBe("closed");
    expect(s.outcome).toBe("completed");
    expect(s.steps[0]?.late).toEqual([expect.objectContaining({ kid: "reviewer-2:test" })]);
    // Only verdicts: any other message after the close still is a violation.
    const after = t.propose(1, 2);
    expectOnlyViolation(t.events, after, /nothing may follow run_closed/, "run_closed");
  });

  it("vetoes a step on any non-approving verdict before execution", () => {
    const t = new TraceBuilder("run-veto");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "full");
    t.verdict(0, "reviewer-1", "approve", "rules");
    t.verdict(0, "reviewer-2", "revise", "llm");
    const exec = t.execute(0);
    const s = expectOnlyViolation(t.events, exec, /vetoed/);
    expect(s.phase).toBe("vetoed");
    expect(s.steps[0]?.vetoes.map((v) => v.decision)).toEqual(["revise"]);
  });

  it("accepts the verifier's direct closes: rejected after a denial or a veto, failed, quarantined", () => {
    const denied = new TraceBuilder("run-denied");
    denied.submit();
    denied.propose(0, 1);
    denied.assign(0, "full", { denied: "rule no-deletes" });
    denied.close("rejected");
    const d = foldRun(denied.events);
    expect(d.violations).toEqual([]);
    expect(d.steps[0]?.denied).toBe("rule no-deletes");
    expect(d.outcome).toBe("rejected");

    const vetoed = new TraceBuilder("run-vetoed");
    vetoed.submit();
    vetoed.propose(0, 1);
    vetoed.assign(0, "standard");
    vetoed.verdict(0, "reviewer-1", "reject");
    vetoed.close("rejected");
    vetoed.verdict(0, "reviewer-2"); // after close: a slow reviewer, recorded as late
    const v = foldRun(vetoed.events);
    expect(v.outcome).toBe("rejected");
    expect(v.violations).toEqual([]);
    expect(v.steps[0]?.late.map((l) => l.kid)).toEqual(["reviewer-2:test"]);

    const sealed = new TraceBuilder("run-sealed");
    sealed.submit();
    sealed.step(0, 2, "light");
    sealed.propose(1, 2);
    sealed.close("quarantined");
    const q = foldRun(sealed.events);
    expect(q.violations).toEqual([]);
    expect(q.status).toBe("quarantined");
    expect(q.closed?.outcome).toBe("quarantined");
  });

  it("never lets an execution that reported an error pass verification", () => {
    const t = new TraceBuilder("run-error");
    t.submit();
    t.propose(0, 1);
    t.assign(0, "light");
    t.execute(0, { outcome: "error" });
    const pass = t.verify(0, "passed");
    expectOnlyViolation(t.events, pass, /reported an error/);
    t.events.pop();
    t.verify(0, "failed");
    t.close("failed");
    const s = foldRun(t.events);
    expect(s.violations).toEqual([]);
    expect(s.effects).toEqual([]);
    expect(s.counts.executionErrors).toBe(1);
  });

  it("is total: garbage events become violations, never exceptions", () => {
    const s0 = initialRunState("run-garbage");
    const junk = [
      { seq: Number.NaN, subject: "x", frame: new Uint8Array(), message: {} },
      { seq: 1, subject: "x", frame: new Uint8Array(), message: null },
      {
        seq: 3,
        subject: "trias.proposer.step_proposed.run-garbage",
        frame: new Uint8Array(),
        message: {
          kind: "step_proposed",
          run: "run-garbage",
          role: "proposer",
          id: "x".repeat(8),
          body: null,
        },
      },
      {
        seq: 2,
        subject: "trias.console.task_submitted.other",
        frame: new Uint8Array(),
        message: { kind: "task_submitted", run: "other" },
      },
    ] as unknown as TraceEvent[];
    let s = s0;
    for (const j of junk) s = reduce(s, j);
    expect(s.violations).toHaveLength(4);
    expect(s.violations[2]?.reason).toMatch(/could not be interpreted/);
    expect(withoutViolations(s)).toEqual(s0);
  });

  it("has one table covering every phase, with only known events", () => {
    expect(Object.keys(TRANSITIONS).sort()).toEqual([...PHASES].sort());
    for (const row of Object.values(TRANSITIONS)) {
      for (const [ev, to] of Object.entries(row)) {
        expect(RUN_EVENTS).toContain(ev);
        expect(PHASES).toContain(to);
      }
    }
    // A closed run takes nothing but a slow reviewer's verdict, which changes nothing.
    expect(TRANSITIONS.closed).toEqual({ late_verdict: "closed" });
    // A quarantined run takes its sealing run_closed, and records a slow verdict as late.
    expect(TRANSITIONS.quarantined).toEqual({
      close_quarantined: "quarantined",
      late_verdict: "quarantined",
    });
  });
});

describe("runstate - advance", () => {
  it("runstate - advancing one state in place gives exactly what reduce and foldRun give", () => {
    const t = TraceBuilder.linear("run-advance", 4, ["light", "standard", "full", "light"]);
    const inPlace = initialRunState("run-advance");
    let copied = initialRunState("run-advance");
    for (const ev of t.events) {
      expect(advance(inPlace, ev)).toBe(true);
      copied = reduce(copied, ev);
    }
    expect(inPlace).toEqual(copied);
    expect(inPlace).toEqual(foldRun(t.events));
  });
});
