import {
  frameRef,
  type Compensation,
  type RecoveryAction,
  type RunOutcome,
  type VerificationVerdict,
} from "@trias/protocol";
import type { TierParams } from "@trias/policy";
import type { EffectRecord, RunState, StepState } from "@trias/runstate";

/** What the verifier does next. Pure data, so a replay of the trace reaches the same decision. */
export type Decision =
  | { kind: "none" }
  | { kind: "close"; outcome: RunOutcome; reason: string }
  | {
      kind: "recover";
      action: RecoveryAction;
      reason: string;
      digest: string;
      nextAttempt: number;
      notBefore: number | null;
      avoid: string[];
      compensation: Compensation | null;
      /** For compensate: frameRef of the effect's frame. */
      evidence: string | null;
    };

/** How to undo one effect, as the tool pack declares it; `null` when it cannot be undone. */
export interface EffectUndo {
  effect: EffectRecord;
  /** The executor's signed step_executed frame for the effect. */
  frame: Uint8Array;
  readOnly: boolean;
  order: { tool: string; args: Compensation["args"] } | null;
}

export interface VerificationFacts {
  verdict: VerificationVerdict;
  outcome: "ok" | "error";
  /** Why the step failed, one clause naming who found what (reasons.ts: stepFailure). */
  reason: string;
}

/**
 * After a step failed verification, within the tier's limits:
 * 1. retry the same action (bounded by maxAttempts, exponential backoff) when the tool ran
 *    but its outcome is not confirmed (failed postcondition, incomplete, uncertain);
 * 2. otherwise roll back: compensate every earlier effect in reverse order;
 * 3. escalate to a human when an effect cannot be undone;
 * 4. close as failed when nothing needs undoing.
 * A tool that refused (outcome error) is not retried unchanged: with a planner that can
 * replan (a model), the step is replanned with the failed action on the avoid list.
 */
export function decideRecovery(
  step: StepState,
  f: VerificationFacts,
  params: TierParams,
  undo: readonly EffectUndo[],
  now: number,
  canReplan = false,
): Decision {
  const digest = step.digest ?? "";
  // A refused action is not retried as it was: with a planner that can plan around the
  // failure, ask for another action (the failed one goes on the avoid list).
  if (f.outcome === "error" && canReplan && step.attempt + 1 < params.maxAttempts) {
    return {
      kind: "recover",
      action: "replan",
      reason: `${f.reason}; replan ${step.attempt + 2} of ${params.maxAttempts}, avoiding this action`,
      digest,
      nextAttempt: step.attempt + 1,
      notBefore: null,
      avoid: [digest],
      compensation: null,
      evidence: null,
    };
  }
  if (f.outcome === "ok" && step.attempt + 1 < params.maxAttempts) {
    const delay = params.backoffMs * 2 ** step.attempt;
    return {
      kind: "recover",
      action: "retry",
      reason: `${f.reason}; retry ${step.attempt + 2} of ${params.maxAttempts} after ${delay} ms`,
      digest,
      nextAttempt: step.attempt + 1,
      notBefore: now + delay,
      avoid: [],
      compensation: null,
      evidence: null,
    };
  }
  const why = f.reason;
  const pending = undo.filter((u) => !u.effect.compensated && !u.readOnly);
  if (pending.length === 0)
    return {
      kind: "close",
      outcome: "failed",
      reason: `${why}; nothing to undo`,
    };
  const irreversible = pending.filter((u) => u.order === null);
  const base = {
    kind: "recover" as const,
    digest,
    nextAttempt: step.attempt,
    notBefore: null,
    avoid: [digest],
    compensation: null,
    evidence: null,
  };
  if (irreversible.length > 0) {
    return {
      ...base,
      action: "escalate",
      reason: `${why}; ${irreversible.map((u) => `${u.effect.tool} (step ${u.effect.step})`).join(", ")} cannot be undone: a human decides`,
    };
  }
  return {
    ...base,
    action: "rollback",
    reason: `${why}; compensating ${pending.length} effect(s) in reverse order`,
  };
}

/** The next compensation of a rollback: the latest effect not yet undone, or null when done. */
export function nextCompensation(state: RunState, undo: readonly EffectUndo[]): Decision {
  const todo = undo.filter((u) => !u.effect.compensated && !u.readOnly && u.order !== null);
  const last = todo.at(-1);
  if (!last) {
    const undone = undo.filter((u) => u.effect.compensated).length;
    const rolled = `rolled back: ${undone} effect(s) compensated in reverse order`;
    const ended = state.ended;
    if (ended === null) return { kind: "close", outcome: "rolled_back", reason: rolled };
    // A person's cancel: it closes as they said, with what could not be undone named.
    const left = undo.filter((u) => !u.effect.compensated && !u.readOnly && u.order === null);
    const kept = left.length
      ? `; left as they are (no undo declared): ${left.map((u) => `${u.effect.tool} (step ${u.effect.step})`).join(", ")}`
      : "";
    const done = undone > 0 ? rolled : "nothing that ran needed undoing";
    return { kind: "close", outcome: ended.outcome, reason: `${ended.reason}; ${done}${kept}` };
  }
  const order = last.order;
  if (!order) return { kind: "none" };
  return {
    kind: "recover",
    action: "compensate",
    reason: `undo step ${last.effect.step} (${last.effect.tool}) with ${order.tool}`,
    digest: last.effect.digest,
    nextAttempt: state.steps[last.effect.step]?.attempt ?? 0,
    notBefore: null,
    avoid: [],
    compensation: {
      step: last.effect.step,
      of: last.effect.digest,
      tool: order.tool,
      args: order.args,
    },
    evidence: frameRef(last.frame),
  };
}
