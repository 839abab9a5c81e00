import type { MessageOf } from "@trias/protocol";
import { nextPhase, proposedAt, type RunState } from "@trias/runstate";
import type { Decision } from "./recovery.js";

/**
 * How many times one run's steps are routed again after policy roll-outs before the run is
 * closed instead: a router and an executor left on different policies would otherwise
 * re-route the same step for ever.
 * @default 2
 */
export const MAX_POLICY_REROUTES = 2;

/**
 * A policy rolled out mid-run: the executor refuses a step routed under another policy
 * digest (`policy_digest_mismatch`) when it next handles it, and nothing would ever route
 * it again. The one rule for what follows (docs/console.md, "Runs that always end"):
 *
 * - a step not yet executed (routed, or approved but refused) is **re-routed**: a retry
 *   order for its next attempt, which the proposer proposes again and the router routes
 *   under the policy it now holds; reviews and approvals start again, and the run's floor
 *   keeps the step's tier from going below what it had (transitions.ts `reroute`);
 * - a refusal of an attempt already re-routed (a redelivery of the old assignment, a late
 *   verdict) changes nothing;
 * - after `maxReroutes` re-routes the run ends with the reason (the router and the executor
 *   still disagree): closed where the run's table allows, else a quarantine that the
 *   verifier seals with the same reason;
 * - an executed step is left to verification and recovery.
 */
export function onPolicyRollout(
  st: Pick<RunState, "phase" | "current" | "steps" | "counts" | "transitions">,
  rejection: MessageOf<"message_rejected">["body"],
  maxReroutes: number = MAX_POLICY_REROUTES,
): Decision | null {
  if (rejection.by !== "executor" || rejection.code !== "policy_digest_mismatch") return null;
  const step = st.current === null ? undefined : st.steps[st.current];
  const rerouted = st.counts.reroutes;
  // About an attempt proposed before the current one: it was re-routed already.
  if (step && rejection.seq !== null && rejection.seq < proposedAt(st, step.index))
    return { kind: "none" };
  // The re-routed attempt is on its way (proposed, not yet routed): let it be routed.
  if (rerouted > 0 && (st.phase === "retrying" || st.phase === "proposed")) return { kind: "none" };
  const why = `policy changed mid-run: ${rejection.reason}`;
  if ((st.phase === "routed" || st.phase === "approved") && step?.digest && rerouted < maxReroutes)
    return {
      kind: "recover",
      action: "retry",
      reason: `${why}; step ${step.index} is routed again under the current policy (re-route ${rerouted + 1} of ${maxReroutes}): its reviews and approvals start again`,
      digest: step.digest,
      nextAttempt: step.attempt + 1,
      notBefore: null,
      avoid: [],
      compensation: null,
      evidence: null,
    };
  const reason =
    rerouted >= maxReroutes
      ? `${why}; re-routed ${rerouted} time(s) already and still refused (are the router and the executor on one policy?); submit the task again once they are`
      : `${why}; submit the task again to route it under the current policy`;
  if (nextPhase(st.phase, "close_failed") !== null)
    return { kind: "close", outcome: "rejected", reason };
  if (st.phase !== "approved") return null;
  return {
    kind: "recover",
    action: "quarantine",
    reason,
    digest: step?.digest ?? "0".repeat(64),
    nextAttempt: step?.attempt ?? 0,
    notBefore: null,
    avoid: [],
    compensation: null,
    evidence: null,
  };
}
