export { Verifier, verdictOf } from "./verifier.js";
export { auditExecution } from "./audit.js";
