import type { Command } from "commander";
import { registerAdmin } from "./admin.js";
import { registerConsole } from "./console.js";
import { registerDemo } from "./demo.js";
import { registerEval } from "./eval.js";
import { registerHuman } from "./human.js";
import { registerKeys } from "./keys.js";
import { registerLab } from "./lab.js";
import { registerPolicy } from "./policy.js";
import { registerRuns } from "./runs.js";
import { registerSubmit } from "./submit.js";
import { registerTools } from "./tools.js";
import { registerUp } from "./up.js";
import { registerTrace } from "./trace.js";
import { registerWatch } from "./watch.js";

/**
 * Every command, in the order `trias --help` lists them. A new command is one module in
 * this folder and one line here.
 */
export const COMMANDS: readonly ((program: Command) => void)[] = [
  registerDemo,
  registerUp,
  registerKeys,
  registerSubmit,
  registerWatch,
  registerRuns,
  registerTrace,
  registerHuman,
  registerConsole,
  registerPolicy,
  registerTools,
  registerAdmin,
  registerLab,
  registerEval,
];
