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
export { pendingHuman, decideAsHuman, waiting, type WaitingStep } from "./human.js";
export { setupTrace, deployNatsConfig, type SetupOptions } from "./setup.js";
export { traceTree } from "./trace.js";
export { buildProgram, normalizeArgv } from "./program.js";
export { EXIT, CliError, classify } from "./cli-kit.js";
export { Forge } from "./lab/forge.js";
export {
  ATTACKS,
  FAILING_VERDICTS,
  seededRandom,
  type Attack,
  type LabContext,
  type LabVerdict,
  type Observed,
} from "./lab/attacks.js";
export { runLab, type LabOptions, type LabReport, type LabRow } from "./lab/run.js";
export { ledgerCorpus, type CorpusTask } from "./eval/corpus.js";
export { runEval, scoreRun, PAPER, type EvalReport, type PolicyMetrics } from "./eval/run.js";
export { ConsoleServer, type ConsoleServerOptions } from "./web/server.js";
