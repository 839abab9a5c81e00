import { Command } from "commander";
import { COMMANDS } from "./commands/index.js";

const ENVIRONMENT_HELP = `
Environment:
  NATS_URL (NATS_USER, NATS_PASSWORD)  the server the agents use (every command but demo, keys, policy, nats-config)
  TRIAS_KEY_DIR                        key directory with the registry (default .trias/keys)
  TRIAS_ENV                            policy environment for demo (dev, staging, prod)
  TRIAS_DEBUG=1                        print the stack of an internal error
  LOG_LEVEL, OTEL_*                    logging and tracing

Exit codes (docs/cli.md): 0 ok, 1 the answer is no (audit failed, run not completed, policy
refused), 2 usage, 3 no such run/step/file/identity, 4 environment missing (NATS, nats-server,
keys, build), 5 unreadable input (a trace file that is not msgpack, truncated, not an export),
70 internal error, 130/143 stopped by SIGINT/SIGTERM.`;

/** The `trias` command tree; every command's --help is generated from its definition here. */
export function buildProgram(): Command {
  const program = new Command("trias")
    .description("trias: a governed execution runtime for AI agents")
    .showHelpAfterError("(add --help for usage)")
    // Throw instead of exiting, so cli.ts maps every error to a documented exit code.
    .exitOverride()
    .addHelpText("after", ENVIRONMENT_HELP);
  for (const register of COMMANDS) register(program);
  return program;
}

/**
 * `pnpm start -- --env prod` hands the CLI `demo -- --env prod`: a `--` right after the
 * command (or first) only separates pnpm's arguments from ours, so it is dropped.
 */
export function normalizeArgv(argv: readonly string[]): string[] {
  const args = [...argv];
  if (args[0] === "--") args.shift();
  if (args[1] === "--") args.splice(1, 1);
  return args;
}
