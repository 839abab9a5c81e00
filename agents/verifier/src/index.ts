export {
  POSTCONDITIONS_UNREADABLE,
  Verifier,
  verdictOf,
  failedAfter,
  type HandlingOutcome,
} from "./verifier.js";
export { auditExecution, auditCompensation, type FrameLookup } from "./audit.js";
export {
  decideRecovery,
  nextCompensation,
  type Decision,
  type EffectUndo,
  type VerificationFacts,
} from "./recovery.js";
export {
  TOOL_SUCCEEDED,
  failedCheck,
  policyDenial,
  reviewStop,
  stepFailure,
  type StepFailure,
} from "./reasons.js";
export {
  react,
  needsUndo,
  runView,
  unauthorisedSteps,
  STEP_REFUSALS,
  type Reaction,
  type ReactContext,
} from "./react.js";
export { ReceiptAnchor, type ToAnchor } from "./anchor.js";
