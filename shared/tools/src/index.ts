export {
  Ledger,
  ToolRefusal,
  LEDGER_BUCKET,
  DEMO_ACCOUNTS,
  account,
  type Account,
  type LedgerState,
} from "./ledger.js";
export {
  TOOLS,
  getTool,
  checkArgs,
  type ToolDef,
  type ToolRuntime,
  type EffectContext,
  type CompensationOrder,
} from "./tools.js";
