export {
  Stack,
  defaultAgents,
  durablesOf,
  REPO_ROOT,
  type AgentSpec,
  type AgentRole,
  type StackOptions,
  type NatsHandle,
} from "./stack.js";
export { ConsoleClient, newRunId } from "./client.js";
export { describe } from "./format.js";
export { DEMO_TASKS, runDemo, type DemoTask, type DemoOptions } from "./demo.js";
export {
  auditAll,
  auditEvents,
  checkCheckpoint,
  checkpointOf,
  openCheckpoint,
  openEvents,
  readRun,
  exportTrace,
  importTrace,
  replayLines,
  UnreadableInput,
  type AllReport,
  type AuditReport,
  type StoredEvent,
} from "./audit.js";
export { pendingHuman, decideAsHuman, type WaitingStep } from "./human.js";
export { setupTrace, deployNatsConfig, type SetupOptions } from "./setup.js";
export { traceTree } from "./trace.js";
export { buildProgram, normalizeArgv } from "./program.js";
export { EXIT, CliError, classify } from "./cli-kit.js";
