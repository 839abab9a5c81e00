export {
  Ledger,
  LEDGER_BUCKET,
  DEMO_ACCOUNTS,
  account,
  type Account,
  type LedgerState,
} from "./ledger.js";
export {
  defineTool,
  defineToolPack,
  isToolPack,
  ToolRefusal,
  type Tool,
  type ToolDefinition,
  type ToolPack,
  type ToolContext,
  type EffectContext,
  type CompensationOrder,
  type ObjectsSpec,
  type PackHost,
} from "./pack.js";
export { Catalogue, checkArgs, type ToolDef } from "./catalogue.js";
export { ledgerPack, testPack, type LedgerResources } from "./ledger-pack.js";
export {
  McpServerConfig,
  McpToolConfig,
  McpCall,
  operationFromAnnotations,
  fillTemplate,
  valueAt,
  type McpOutcome,
} from "./mcp-config.js";
export {
  TriasConfig,
  ConfigError,
  BUILTIN_PACKS,
  CONFIG_FILE_NAME,
  configFileFrom,
  parseConfig,
  loadConfig,
  loadPacks,
  loadCatalogue,
  loadAgentCatalogue,
  type LoadedConfig,
} from "./config.js";
export { scaffoldEntries } from "./scaffold.js";
export {
  kycPack,
  kycRisk,
  screenName,
  KYC_BUCKET,
  KYC_LISTS,
  MEDIUM_RISK_VOLUME,
  HIGH_RISK_VOLUME,
  type KycLists,
  type KycResources,
  type Risk,
} from "./kyc.js";
export { SubjectKeys, checkSubject, seal, unseal, sealFields, type KeyState } from "./privacy.js";
export {
  codePack,
  codeConfigFromEnv,
  CodeConfig,
  type CodeConfigInput,
  type CodeResources,
} from "./code.js";
