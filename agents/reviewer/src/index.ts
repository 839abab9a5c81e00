export { Reviewer } from "./reviewer.js";
export { reviewByRules, RULE_LIMITS, type RuleVerdict } from "./rules.js";
