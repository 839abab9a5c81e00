import type { Check, ReviewDecision, VerificationVerdict } from "@trias/protocol";

/**
 * How the verifier words why a step or a run stopped. Each reason is one clause that names
 * who refused or found what, and why; what follows a semicolon is what happens next. A
 * check is named for what should hold ("tool succeeded"), so printing "name: detail" for a
 * failed one reads as its opposite ("tool succeeded: insufficient funds").
 */

/** The check recorded when the tool itself said no (its outcome is `error`). */
export const TOOL_SUCCEEDED = "tool succeeded";

/** One check that did not hold, as what was expected and what was found. */
export function failedCheck(c: Check): string {
  return `"${c.name}" did not hold (${c.detail})`;
}

export interface StepFailure {
  index: number;
  tool: string;
  /** 0-based, as in the envelope. */
  attempt: number;
  verdict: VerificationVerdict;
  outcome: "ok" | "error";
  checks: readonly Check[];
}

/**
 * Why a step failed: the tool's own refusal when it refused (the checks after it say only
 * that), else the verifier's finding with every check that did not hold.
 */
export function stepFailure(s: StepFailure): string {
  const failed = s.checks.filter((c) => !c.ok);
  if (s.outcome === "error") {
    const refusal = failed.find((c) => c.name === TOOL_SUCCEEDED);
    return `${s.tool} refused step ${s.index} (attempt ${s.attempt + 1}): ${refusal?.detail ?? "no reason given"}`;
  }
  const found = failed.map(failedCheck).join("; ") || "no check failed, yet it did not pass";
  return `the verifier found step ${s.index} (${s.tool}) ${s.verdict} at attempt ${s.attempt + 1}: ${found}`;
}

const DECIDED: Record<ReviewDecision, string> = {
  approve: "approved",
  revise: "asked to revise",
  reject: "rejected",
  ask_user: "asked the user about",
  escalate: "escalated",
};

/** A reviewer's verdict that stops a step. */
export function reviewStop(
  reviewer: string,
  decision: ReviewDecision,
  step: number | null,
  reasons: readonly string[],
): string {
  return `${reviewer} ${DECIDED[decision]} step ${step ?? 0}: ${reasons.join("; ") || "no reason given"}`;
}

/** A step the router's policy denied outright. */
export function policyDenial(step: number | null, environment: string, denied: string): string {
  return `the ${environment} policy denied step ${step ?? 0}: ${denied}`;
}
