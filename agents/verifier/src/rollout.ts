import type { MessageOf } from "@trias/protocol";
import { nextPhase, type RunState } from "@trias/runstate";
import type { Decision } from "./recovery.js";

/**
 * A policy rolled out mid-run: the executor refuses a step routed under another policy
 * digest (`policy_digest_mismatch`), and nothing would ever route it again, so the run
 * would stay open for good. It ends at once with the reason and what to do: closed where
 * the run's table allows (nothing approved), else, once people or reviewers approved the
 * step (the table then forbids a plain close), a quarantine that the verifier seals with
 * the same reason. A step already executed is left to verification and recovery.
 */
export function closeOnPolicyRollout(
  st: Pick<RunState, "phase" | "current" | "steps">,
  rejection: MessageOf<"message_rejected">["body"],
): Decision | null {
  if (rejection.by !== "executor" || rejection.code !== "policy_digest_mismatch") return null;
  const reason = `policy changed mid-run: ${rejection.reason}; submit the task again to route it under the current policy`;
  if (nextPhase(st.phase, "close_failed") !== null)
    return { kind: "close", outcome: "rejected", reason };
  if (st.phase !== "approved") return null;
  const step = st.current === null ? undefined : st.steps[st.current];
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
