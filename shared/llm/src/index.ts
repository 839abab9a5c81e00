export { project, maskText } from "./project.js";
export {
  LlmClient,
  llmConfigFromEnv,
  LlmEnvSchema,
  DEFAULT_LLM_BASE_URL,
  DEFAULT_LLM_MODEL,
  DEFAULT_LLM_TIMEOUT_MS,
  DEFAULT_LLM_SYSTEM,
  type LlmConfig,
  type ChatMessage,
  type Usage,
} from "./client.js";
