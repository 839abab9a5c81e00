/**
 * The legal transitions of a run, in one table. The run is in exactly one phase; each event
 * is first classified (classification checks bindings: digests, evidence, keys, order) into
 * one of the `RunEvent` names below, and the event is legal only if the table has an entry
 * for (phase, event). Everything else is an illegal transition, recorded and not applied.
 *
 * `message_rejected` is not in the table: a refusal is a record, never a transition, and is
 * accepted in every phase, after close and after quarantine included.
 */

export const PHASES = [
  "new",
  "open",
  "proposed",
  "routed",
  "approved",
  "denied",
  "vetoed",
  "executed",
  "passed",
  "failed",
  "retrying",
  "replanning",
  "escalated",
  "rolling_back",
  "compensation_ordered",
  "compensation_executed",
  "compensation_failed",
  "closed",
  "quarantined",
] as const;
export type Phase = (typeof PHASES)[number];

export const RUN_EVENTS = [
  "submit",
  /** A proposal for the next step index (0 for the first). */
  "propose_next",
  /** A new attempt of the current step: after a retry, a replan, a veto or a denial. */
  "propose_again",
  "assign",
  "deny",
  /** A later tier assignment for the same digest that raises the tier. */
  "raise",
  "approve",
  "veto",
  /** Derived, not a message: the approvals now meet the requirement. */
  "quorum",
  /** Derived, not a message: a raised requirement is no longer met by the approvals. */
  "quorum_lost",
  /** A verdict on a digest no longer under review (a slow reviewer): recorded, changes no phase. */
  "late_verdict",
  "execute",
  "verify_pass",
  "verify_fail",
  "retry",
  /**
   * A retry of a step not yet executed, whose assignment the executor refused as routed
   * under another policy: the step is proposed and routed again under the current one.
   */
  "reroute",
  "replan",
  "rollback",
  "compensate",
  "escalate",
  "quarantine",
  "compensation_execute",
  "compensation_pass",
  "compensation_fail",
  "close_completed",
  "close_rolled_back",
  /** Closing as failed, rejected or escalated. */
  "close_failed",
  "close_quarantined",
] as const;
export type RunEvent = (typeof RUN_EVENTS)[number];

type Row = Partial<Record<RunEvent, Phase>>;

/**
 * Every phase of a live run may be quarantined, by a recovery order or by a run_closed that
 * quarantines and seals at once, and may receive a slow reviewer's verdict.
 */
function live(self: Phase, row: Row): Row {
  return {
    ...row,
    quarantine: "quarantined",
    close_quarantined: "quarantined",
    late_verdict: self,
  };
}

/**
 * Closing is refused while an effect may be in flight or unverified (approved, executed,
 * a compensation ordered or executed): docs/design.md invariant 5, no executed step ends silently.
 */
export const TRANSITIONS: Readonly<Record<Phase, Readonly<Row>>> = {
  new: { submit: "open" },
  open: live("open", { propose_next: "proposed", close_failed: "closed" }),
  proposed: live("proposed", { assign: "routed", deny: "denied", close_failed: "closed" }),
  routed: live("routed", {
    approve: "routed",
    quorum: "approved",
    veto: "vetoed",
    raise: "routed",
    deny: "denied",
    // A person's cancel while the step waits for review; nothing approved, nothing in flight.
    rollback: "rolling_back",
    reroute: "retrying",
    close_failed: "closed",
  }),
  approved: live("approved", {
    // The executor refused the approved step (another policy): it never runs as routed.
    reroute: "retrying",
    approve: "approved",
    raise: "approved",
    quorum_lost: "routed",
    veto: "vetoed",
    deny: "denied",
    execute: "executed",
  }),
  denied: live("denied", {
    propose_again: "proposed",
    replan: "replanning",
    rollback: "rolling_back",
    compensate: "compensation_ordered",
    escalate: "escalated",
    close_failed: "closed",
  }),
  vetoed: live("vetoed", {
    propose_again: "proposed",
    replan: "replanning",
    rollback: "rolling_back",
    compensate: "compensation_ordered",
    escalate: "escalated",
    close_failed: "closed",
  }),
  executed: live("executed", { verify_pass: "passed", verify_fail: "failed" }),
  passed: live("passed", {
    propose_next: "proposed",
    escalate: "escalated",
    close_completed: "closed",
    close_failed: "closed",
  }),
  failed: live("failed", {
    retry: "retrying",
    replan: "replanning",
    rollback: "rolling_back",
    compensate: "compensation_ordered",
    escalate: "escalated",
    close_failed: "closed",
  }),
  retrying: live("retrying", {
    execute: "executed",
    propose_again: "proposed",
    escalate: "escalated",
    close_failed: "closed",
  }),
  replanning: live("replanning", {
    propose_again: "proposed",
    escalate: "escalated",
    close_failed: "closed",
  }),
  escalated: live("escalated", {
    retry: "retrying",
    replan: "replanning",
    rollback: "rolling_back",
    compensate: "compensation_ordered",
    close_failed: "closed",
  }),
  rolling_back: live("rolling_back", {
    compensate: "compensation_ordered",
    compensation_execute: "compensation_executed",
    escalate: "escalated",
    close_rolled_back: "closed",
    close_failed: "closed",
  }),
  compensation_ordered: live("compensation_ordered", {
    compensation_execute: "compensation_executed",
  }),
  compensation_executed: live("compensation_executed", {
    compensation_pass: "rolling_back",
    compensation_fail: "compensation_failed",
  }),
  compensation_failed: live("compensation_failed", {
    compensate: "compensation_ordered",
    compensation_execute: "compensation_executed",
    escalate: "escalated",
    close_failed: "closed",
  }),
  // Terminal: a slow reviewer's verdict is recorded as late and changes nothing.
  closed: { late_verdict: "closed" },
  // The verifier may seal a quarantined run once, so it still gets a signed receipt; a slow
  // reviewer's verdict is recorded as late, as in any other phase.
  quarantined: { close_quarantined: "quarantined", late_verdict: "quarantined" },
};

/** The phase the table allows after `event` in `phase`, or null when it is illegal. */
export function nextPhase(phase: Phase, event: RunEvent): Phase | null {
  return TRANSITIONS[phase][event] ?? null;
}
