export { project, maskText } from "./project.js";
export {
  LlmClient,
  llmConfigFromEnv,
  type LlmConfig,
  type ChatMessage,
  type Usage,
} from "./client.js";
