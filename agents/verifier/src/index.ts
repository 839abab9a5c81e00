export { POSTCONDITIONS_UNREADABLE, Verifier, verdictOf } from "./verifier.js";
export { auditExecution, auditCompensation } from "./audit.js";
export {
  decideRecovery,
  nextCompensation,
  type Decision,
  type EffectUndo,
  type VerificationFacts,
} from "./recovery.js";
export { ReceiptAnchor, type ToAnchor } from "./anchor.js";
