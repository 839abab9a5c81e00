export { Reviewer, type ReviewerStrategy } from "./reviewer.js";
export { reviewByRules, type RuleVerdict } from "./rules.js";
export { reviewWithLlm } from "./llm-review.js";
