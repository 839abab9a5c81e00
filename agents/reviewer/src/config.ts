// The reviewer's own environment variables, beside the ones every agent reads
// (AgentEnvSchema in @trias/runtime). Read once, at start, by main.ts.
import { z } from "zod";
import { envEnum, envPositiveInt, readEnv, type Env } from "@trias/protocol";
import { STAND_IN_MS, type ReviewerStrategy } from "./reviewer.js";

export const ReviewerEnvSchema = z.object({
  /** Which steps this identity judges: those whose tier asks for this strategy. @default "rules" */
  TRIAS_REVIEWER_STRATEGY: envEnum(["rules", "llm"]),
  /**
   * Claim steps that need fewer reviewers than the registry holds (docs/decisions/
   * 006-review-claims.md). Claims pay for themselves when a review costs a model call; a
   * rules review costs less than the claim, so rules reviewers all judge unless told otherwise.
   * @default "on" for llm reviewers, "off" for rules reviewers
   */
  TRIAS_REVIEW_CLAIMS: envEnum(["on", "off"]),
  /** How long after a step's assignment a reviewer that did not claim it stands in. @default STAND_IN_MS */
  TRIAS_REVIEW_STANDIN_MS: envPositiveInt(STAND_IN_MS, "milliseconds"),
});

export interface ReviewerConfig {
  strategy: ReviewerStrategy;
  claims: boolean;
  standInMs: number;
}

/** The reviewer's settings from its environment; a wrong value throws `config_invalid`. */
export function readReviewerConfig(env: Env = process.env): ReviewerConfig {
  const e = readEnv(ReviewerEnvSchema, env);
  const strategy = e.TRIAS_REVIEWER_STRATEGY ?? "rules";
  return {
    strategy,
    claims: (e.TRIAS_REVIEW_CLAIMS ?? (strategy === "llm" ? "on" : "off")) === "on",
    standInMs: e.TRIAS_REVIEW_STANDIN_MS,
  };
}
