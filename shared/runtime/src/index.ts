export {
  readAgentEnv,
  AgentEnvSchema,
  DEFAULT_NATS_URL,
  DEFAULT_KEY_DIR,
  DEFAULT_ENVIRONMENT,
  DEFAULT_LOG_LEVEL,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_MESSAGE_TTL_MS,
  type AgentEnv,
} from "./env.js";
export {
  AgentHost,
  faultPoint,
  silentLogger,
  CAUSE_HEADER,
  type Logger,
  type Incoming,
  type HandlerResult,
  type EmitFields,
  type Emitted,
  type HostOptions,
  type ListenOptions,
} from "./host.js";
export { bootAgent, drainOnSignal, createLogger, fatal, type Booted } from "./boot.js";
export {
  openAssignment,
  openVerdict,
  checkVerdictBinding,
  countQuorum,
  separationOfDuties,
  type HumanGroupCount,
  type OpenedAssignment,
  type OpenedProposal,
  type OpenedVerdict,
  type QuorumResult,
} from "./evidence.js";
export { checkCompensationOrder, type DeclaredUndo, type OrderCheck } from "./compensation.js";
export {
  EFFECTS_BUCKET,
  resultRef,
  isResultRef,
  resultKey,
  resolveResult,
  type ResultRef,
  type ResultStore,
} from "./results.js";
export { Payloads, busPayloads, type PayloadBucket } from "./payloads.js";
export {
  DEFAULT_PARTITIONS,
  LeaseTableSchema,
  partitionOf,
  planLeases,
  partitionAction,
  type LeaseTable,
  type LeasePlan,
  type LeaseView,
  type PartitionState,
  type PartitionAction,
} from "./partitions.js";
export { PartitionKeeper, DEFAULT_LEASE_MS, type KeeperOptions, type Ticket } from "./leases.js";
