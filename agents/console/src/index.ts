export {
  Stack,
  defaultAgents,
  processName,
  durablesOf,
  REPO_ROOT,
  type AgentSpec,
  type AgentRole,
  type StackOptions,
  type NatsHandle,
} from "./stack.js";
export { ConsoleClient, newRunId } from "./client.js";
export { describe } from "./format.js";
export {
  DEMO_SCENARIOS,
  DEMO_TASKS,
  kycDemoTasks,
  runDemo,
  type DemoOptions,
  type DemoScenario,
  type DemoTask,
} from "./demo.js";
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
export { RunIndex, type RunRow } from "./runs.js";
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
export {
  CORPUS_PACKS,
  codeCorpus,
  fsCorpus,
  fullCorpus,
  kycCorpus,
  ledgerCorpus,
  type CorpusPack,
  type CorpusTask,
} from "./eval/corpus.js";
export {
  evalPolicy,
  runEval,
  scoreRun,
  waves,
  PAPER,
  type EvalReport,
  type PackMetrics,
  type PolicyMetrics,
} from "./eval/run.js";
export { ConsoleServer, type ConsoleServerOptions } from "./web/server.js";
