export { Reviewer, type ReviewerStrategy } from "./reviewer.js";
export { reviewByRules, RULE_LIMITS, type RuleVerdict } from "./rules.js";
export { reviewWithLlm } from "./llm-review.js";
