import { describe, expect, it } from "vitest";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import type { Check, Message } from "@trias/protocol";
import {
  initialRunState,
  nextPhase,
  type Phase,
  type RunState,
  type StepState,
} from "@trias/runstate";
import { react, needsUndo, type ReactContext, type Reaction } from "./react.js";
import type { EffectUndo } from "./recovery.js";

// The verifier's reactions as a state machine test: a run's state and one message in, one
// decision out; no server, no clock, no trace reads (the undo plan is an input).
const policy = loadPolicy(shippedPolicyFile("dev"));
const SELF = "verifier:self";
const D = "d".repeat(64);
const AUTH_FAIL: Check = { name: "tier is at least the policy's", ok: false, detail: "downgrade" };

function state(phase: Phase, o: { verification?: Check[]; total?: number } = {}): RunState {
  const st = initialRunState("r1");
  st.status = "open";
  st.phase = phase;
  st.current = 0;
  st.steps[0] = {
    index: 0,
    attempt: 0,
    digest: D,
    tool: "ledger.transfer",
    tier: "standard",
    total: o.total ?? 1,
    history: [],
    execution: { outcome: "ok" },
    verification: o.verification ? { seq: 5, verdict: "failed", checks: o.verification } : null,
  } as unknown as StepState;
  st.effects = [
    {
      step: 0,
      attempt: 0,
      digest: D,
      seq: 4,
      effectId: "r1:0:0",
      tool: "ledger.transfer",
      compensations: [],
      compensated: false,
    },
  ];
  return st;
}

const UNDO: EffectUndo[] = [
  {
    effect: {
      step: 0,
      attempt: 0,
      digest: D,
      seq: 4,
      effectId: "r1:0:0",
      tool: "ledger.transfer",
      compensations: [],
      compensated: false,
    },
    frame: new Uint8Array([1]),
    readOnly: false,
    order: { tool: "ledger.transfer", args: { from: "bob", to: "alice", amount: 5 } },
  },
];

function msg(kind: Message["kind"], body: Record<string, unknown>, sender = SELF): Message {
  return { kind, run: "r1", step: 0, attempt: 0, sender, body } as unknown as Message;
}
const verified = (verdict: string, checks: Check[] = [], compensationOf: string | null = null) =>
  msg("step_verified", { digest: D, verdict, checks, compensationOf, index: 0, total: 1 });
const rejected = (by: string, code: string, subject = "trias.router.tier_assigned.r1") =>
  msg("message_rejected", { by, code, reason: "because", subject, seq: 3 }, "executor:x");

function ctx(o: Partial<ReactContext> = {}): ReactContext {
  return { self: SELF, violation: undefined, policy, now: 1_000, undo: UNDO, ...o };
}

const CASES: [string, RunState, Message, Partial<ReactContext>, string, RegExp | null][] = [
  [
    "an execution is verified",
    state("executed"),
    msg("step_executed", { digest: D }),
    {},
    "verify",
    null,
  ],
  [
    "an execution the trace does not back is quarantined",
    state("approved"),
    msg("step_executed", { digest: D }),
    { violation: "no quorum" },
    "recover:quarantine",
    /not backed by the trace: no quorum/,
  ],
  [
    "another verifier's verification is not acted on",
    state("passed"),
    verified("passed"),
    { self: "other" },
    "none",
    null,
  ],
  [
    "the last step passing closes the run",
    state("passed"),
    verified("passed"),
    {},
    "close:completed",
    /all 1 step/,
  ],
  [
    "an unauthorised execution is undone first",
    state("failed", { verification: [AUTH_FAIL] }),
    verified("failed", [AUTH_FAIL]),
    {},
    "recover:compensate",
    /without valid authorisation.*undoing it before quarantine/,
  ],
  [
    "an unauthorised execution that cannot be undone is quarantined",
    state("failed", { verification: [AUTH_FAIL] }),
    verified("failed", [AUTH_FAIL]),
    { undo: [] },
    "recover:quarantine",
    /nothing of it can be undone/,
  ],
  [
    "the undo of an unauthorised execution is followed by a quarantine",
    state("rolling_back", { verification: [AUTH_FAIL] }),
    verified("passed", [], D),
    {},
    "recover:quarantine",
    /step 0 executed without valid authorisation \(tier is at least the policy's\); its compensation passed/,
  ],
  [
    "the last undo of a rollback closes the run rolled back",
    state("rolling_back"),
    verified("passed", [], D),
    { undo: [{ ...UNDO[0]!, effect: { ...UNDO[0]!.effect, compensated: true } }] },
    "close:rolled_back",
    /rolled back/,
  ],
  [
    "the last undo of a person's cancel closes the run cancelled, with their reason",
    {
      ...state("rolling_back"),
      ended: { outcome: "cancelled", sender: "bob:x", reason: "cancelled by bob: wrong", seq: 7 },
    },
    verified("passed", [], D),
    { undo: [{ ...UNDO[0]!, effect: { ...UNDO[0]!.effect, compensated: true } }] },
    "close:cancelled",
    /^cancelled by bob: wrong; rolled back: 1 effect\(s\) compensated/,
  ],
  [
    "a person's quarantine that resolves the run closes it resolved",
    state("quarantined"),
    msg(
      "recovery_decided",
      { action: "quarantine", reason: "resolved by hand by bob: done", ends: "resolved" },
      "bob:x",
    ),
    {},
    "close:resolved",
    /resolved by hand by bob/,
  ],
  [
    "a quarantine order closes the run",
    state("quarantined"),
    msg("recovery_decided", { action: "quarantine", reason: "halt" }),
    {},
    "close:quarantined",
    /halt/,
  ],
  [
    "a denied step closes the run",
    state("denied"),
    msg("tier_assigned", { denied: "too big", environment: "prod" }),
    {},
    "close:rejected",
    /the prod policy denied step 0: too big/,
  ],
  [
    "the executor refusing a downgraded step closes a run still routed",
    state("routed"),
    rejected("executor", "tier_downgrade"),
    {},
    "close:rejected",
    /refused step 0 \(tier_downgrade\)/,
  ],
  [
    "... and quarantines one the trace counts as approved",
    state("approved"),
    rejected("executor", "tier_downgrade"),
    {},
    "recover:quarantine",
    /tier_downgrade/,
  ],
  [
    "an undo the executor refuses for an unauthorised execution quarantines",
    state("compensation_ordered", { verification: [AUTH_FAIL] }),
    rejected("executor", "scope_denied", "trias.verifier.recovery_decided.r1"),
    {},
    "recover:quarantine",
    /could not be compensated/,
  ],
  [
    "a recovery order the executor refuses otherwise escalates",
    state("rolling_back"),
    rejected("executor", "scope_denied", "trias.verifier.recovery_decided.r1"),
    {},
    "recover:escalate",
    /a human decides/,
  ],
  [
    "a compensation order the executor refuses halts the run: no escalation is legal while it is ordered",
    state("compensation_ordered"),
    rejected("executor", "scope_denied", "trias.verifier.recovery_decided.r1"),
    {},
    "recover:quarantine",
    /the executor refused a recovery order \(scope_denied: because\); the run is halted/,
  ],
  [
    "a task the proposer refuses closes the run",
    state("open"),
    rejected("proposer", "schema_invalid", "trias.console.task_submitted.r1"),
    {},
    "close:rejected",
    /the proposer refused the task/,
  ],
  [
    "a next step the proposer cannot propose (too large to send) escalates",
    state("passed", { total: 2 }),
    rejected("proposer", "frame_oversized", "trias.verifier.step_verified.r1"),
    {},
    "recover:escalate",
    /could not propose the step after step 0 \(frame_oversized: because\)/,
  ],
  [
    "a forged message the executor refused changes nothing",
    state("routed"),
    rejected("executor", "signature_invalid"),
    {},
    "none",
    null,
  ],
];

function label(r: Reaction): string {
  if (r.kind === "recover") return `recover:${r.action}`;
  if (r.kind === "close") return `close:${r.outcome}`;
  return r.kind;
}

describe("verifier reactions (pure)", () => {
  it.each(CASES)("react - %s", (_n, st, m, c, want, reason) => {
    const r = react(st, m, ctx(c));
    expect(label(r)).toBe(want);
    if (reason) expect("reason" in r ? r.reason : "").toMatch(reason);
    // A decision the run's state would refuse leaves the run open for ever (invariant 12).
    if (r.kind === "recover") expect(nextPhase(st.phase, r.action)).not.toBeNull();
  });

  it("react - the undo plan is read only for what needs it", () => {
    expect(needsUndo(verified("passed"))).toBe(false);
    expect(needsUndo(verified("failed"))).toBe(true);
    expect(needsUndo(verified("passed", [], D))).toBe(true);
    expect(needsUndo(msg("recovery_decided", { action: "rollback" }))).toBe(true);
    expect(needsUndo(msg("recovery_decided", { action: "quarantine" }))).toBe(false);
  });
});
