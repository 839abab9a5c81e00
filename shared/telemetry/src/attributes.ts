import type { Attributes } from "@opentelemetry/api";

// Attribute names. `messaging.*` and `gen_ai.*` follow the OpenTelemetry semantic
// conventions (messaging spans for NATS, GenAI client spans); `trias.*` are ours.

// --- messaging (NATS) ---
export const ATTR_MESSAGING_SYSTEM = "messaging.system";
export const ATTR_MESSAGING_DESTINATION_NAME = "messaging.destination.name";
/** The subject with its variable part replaced, e.g. `trias.proposer.proposal.{run}`. */
export const ATTR_MESSAGING_DESTINATION_TEMPLATE = "messaging.destination.template";
export const ATTR_MESSAGING_OPERATION_TYPE = "messaging.operation.type";
export const ATTR_MESSAGING_OPERATION_NAME = "messaging.operation.name";
export const ATTR_MESSAGING_MESSAGE_ID = "messaging.message.id";
export const ATTR_MESSAGING_MESSAGE_BODY_SIZE = "messaging.message.body.size";
export const ATTR_MESSAGING_CONSUMER_GROUP_NAME = "messaging.consumer.group.name";
export const MESSAGING_SYSTEM_NATS = "nats";
/**
 * `messaging.operation.type` values. Current semconv says `send` for a publish (the older
 * value `publish` is deprecated), `process` for a consumer handling a delivered message.
 */
export const MESSAGING_OPERATION_SEND = "send";
export const MESSAGING_OPERATION_RECEIVE = "receive";
export const MESSAGING_OPERATION_PROCESS = "process";
export const MESSAGING_OPERATION_SETTLE = "settle";
export type MessagingOperation = "send" | "receive" | "process" | "settle";

// --- GenAI (model calls) ---
export const ATTR_GEN_AI_SYSTEM = "gen_ai.system";
/** The newer name of `gen_ai.system`; `genAiAttributes` sets both. */
export const ATTR_GEN_AI_PROVIDER_NAME = "gen_ai.provider.name";
export const ATTR_GEN_AI_OPERATION_NAME = "gen_ai.operation.name";
export const ATTR_GEN_AI_REQUEST_MODEL = "gen_ai.request.model";
export const ATTR_GEN_AI_RESPONSE_MODEL = "gen_ai.response.model";
export const ATTR_GEN_AI_USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens";
export const ATTR_GEN_AI_USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens";

// --- error (semconv) ---
export const ATTR_ERROR_TYPE = "error.type";

// --- trias ---
export const ATTR_TRIAS_RUN = "trias.run";
export const ATTR_TRIAS_STEP = "trias.step";
export const ATTR_TRIAS_ATTEMPT = "trias.attempt";
export const ATTR_TRIAS_TIER = "trias.tier";
export const ATTR_TRIAS_VERDICT = "trias.verdict";
export const ATTR_TRIAS_POLICY_DIGEST = "trias.policy_digest";
export const ATTR_TRIAS_AGENT = "trias.agent";
export const ATTR_TRIAS_ROLE = "trias.role";
export const ATTR_TRIAS_MESSAGE_KIND = "trias.message.kind";
export const ATTR_TRIAS_TOOL = "trias.tool";
export const ATTR_TRIAS_REVIEWER = "trias.reviewer";
export const ATTR_TRIAS_OUTCOME = "trias.outcome";
export const ATTR_TRIAS_PHASE = "trias.phase";
export const ATTR_TRIAS_REASON_CODE = "trias.reason_code";
export const ATTR_TRIAS_REASON = "trias.reason";
export const ATTR_TRIAS_RECOVERY_ACTION = "trias.recovery.action";

// --- span events ---
/** A message refused (gate, FSM, signature...): attributes trias.reason_code, trias.reason. */
export const EVENT_TRIAS_REJECTION = "trias.rejection";
/** A recovery decision (retry, replan, rollback, escalate, quarantine): trias.recovery.action, trias.reason. */
export const EVENT_TRIAS_RECOVERY = "trias.recovery";

export interface NatsAttributesInput {
  operation: MessagingOperation;
  /** The concrete NATS subject. */
  subject: string;
  /** The subject with its variable part replaced, for low-cardinality grouping. */
  template?: string;
  /** The envelope id (also the JetStream msg id used for dedup). */
  messageId?: string;
  bodySize?: number;
  /** The durable consumer name on the processing side. */
  consumerGroup?: string;
}

/** `messaging.*` attributes for a NATS publish or a consumer's processing of one message. */
export function natsAttributes(input: NatsAttributesInput): Attributes {
  const a: Attributes = {
    [ATTR_MESSAGING_SYSTEM]: MESSAGING_SYSTEM_NATS,
    [ATTR_MESSAGING_OPERATION_TYPE]: input.operation,
    [ATTR_MESSAGING_OPERATION_NAME]: input.operation === "send" ? "publish" : input.operation,
    [ATTR_MESSAGING_DESTINATION_NAME]: input.subject,
  };
  if (input.template !== undefined) a[ATTR_MESSAGING_DESTINATION_TEMPLATE] = input.template;
  if (input.messageId !== undefined) a[ATTR_MESSAGING_MESSAGE_ID] = input.messageId;
  if (input.bodySize !== undefined) a[ATTR_MESSAGING_MESSAGE_BODY_SIZE] = input.bodySize;
  if (input.consumerGroup !== undefined)
    a[ATTR_MESSAGING_CONSUMER_GROUP_NAME] = input.consumerGroup;
  return a;
}

export interface GenAiAttributesInput {
  /** Provider, e.g. `openai` (any OpenAI-compatible API) or `trias.planner` for the built-in one. */
  system: string;
  model: string;
  /** Semconv operation name, `chat` by default. */
  operation?: string;
  responseModel?: string;
  inputTokens?: number;
  outputTokens?: number;
}

/** `gen_ai.*` attributes for one model call (span kind CLIENT, name `chat <model>`). */
export function genAiAttributes(input: GenAiAttributesInput): Attributes {
  const a: Attributes = {
    [ATTR_GEN_AI_SYSTEM]: input.system,
    [ATTR_GEN_AI_PROVIDER_NAME]: input.system,
    [ATTR_GEN_AI_OPERATION_NAME]: input.operation ?? "chat",
    [ATTR_GEN_AI_REQUEST_MODEL]: input.model,
  };
  if (input.responseModel !== undefined) a[ATTR_GEN_AI_RESPONSE_MODEL] = input.responseModel;
  if (input.inputTokens !== undefined) a[ATTR_GEN_AI_USAGE_INPUT_TOKENS] = input.inputTokens;
  if (input.outputTokens !== undefined) a[ATTR_GEN_AI_USAGE_OUTPUT_TOKENS] = input.outputTokens;
  return a;
}

export interface TriasAttributesInput {
  run?: string;
  step?: number | string;
  attempt?: number;
  tier?: string;
  verdict?: string;
  policyDigest?: string;
  agent?: string;
  role?: string;
  kind?: string;
  tool?: string;
}

/** `trias.*` attributes, skipping the ones not given. */
export function triasAttributes(input: TriasAttributesInput): Attributes {
  const a: Attributes = {};
  if (input.run !== undefined) a[ATTR_TRIAS_RUN] = input.run;
  if (input.step !== undefined) a[ATTR_TRIAS_STEP] = input.step;
  if (input.attempt !== undefined) a[ATTR_TRIAS_ATTEMPT] = input.attempt;
  if (input.tier !== undefined) a[ATTR_TRIAS_TIER] = input.tier;
  if (input.verdict !== undefined) a[ATTR_TRIAS_VERDICT] = input.verdict;
  if (input.policyDigest !== undefined) a[ATTR_TRIAS_POLICY_DIGEST] = input.policyDigest;
  if (input.agent !== undefined) a[ATTR_TRIAS_AGENT] = input.agent;
  if (input.role !== undefined) a[ATTR_TRIAS_ROLE] = input.role;
  if (input.kind !== undefined) a[ATTR_TRIAS_MESSAGE_KIND] = input.kind;
  if (input.tool !== undefined) a[ATTR_TRIAS_TOOL] = input.tool;
  return a;
}
