export {
  Operation,
  TierParams,
  HumanRequirement,
  ToolEntry,
  RateLimit,
  ArgCheck,
  Rule,
  Budgets,
  Limits,
  DEFAULT_MAX_ARGUMENT_BYTES,
  PolicyDocument,
  type PolicyInput,
} from "./schema.js";
export {
  loadPolicy,
  parsePolicy,
  policyDigest,
  policyJsonSchema,
  PolicyError,
  parseYamlAs,
  type ParsedYaml,
  type LoadedPolicy,
  type CompiledArgCheck,
  type PolicyProblem,
} from "./load.js";
export { SHIPPED_POLICY_DIR, shippedPolicyFile } from "./paths.js";
export {
  compileCondition,
  ConditionError,
  CONDITION_VARIABLES,
  ALLOWED_FUNCTIONS,
  MAX_CONDITION_LENGTH,
  type CompiledCondition,
  type ConditionFacts,
  type ConditionErrorKind,
  type StaticFacts,
  type Specialized,
} from "./conditions.js";
export {
  decideTier,
  humanText,
  unknownToolReason,
  type StepFacts,
  type TierDecision,
  type RiskTerms,
  type MatchedRule,
} from "./decide.js";
export {
  explainStep,
  diffPolicies,
  renderPolicyDiff,
  summarizePolicy,
  SAMPLE_ARGS,
  type ExplainInput,
  type PolicyDiffRow,
} from "./explain.js";
export { policyChanges, renderPolicyChanges, type PolicyChange } from "./changes.js";
export {
  PolicyCase,
  PolicyCases,
  loadPolicyCases,
  runPolicyCases,
  type CaseResult,
} from "./cases.js";
export {
  deriveStep,
  checkAssignment,
  unknownRun,
  type StepIdentity,
  type RunView,
  type Derivation,
  type AssignedRequirement,
  type AssignmentCheck,
} from "./derive.js";
export {
  checkArgumentSize,
  maxArgumentBytes,
  checkBudget,
  decideRate,
  admitCall,
  SharedWindowSchema,
  rateLimitOf,
  rateLimitsOf,
  RateLimiter,
  type AcceptedCall,
  type BudgetUsage,
  type RateDecision,
  type RateQuery,
} from "./limits.js";
export { policyCatalogueProblems } from "./catalogue-check.js";
export { checkArguments, type ArgCheckVerdict } from "./arg-checks.js";
