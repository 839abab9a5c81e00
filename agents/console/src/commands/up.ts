import { join, resolve } from "node:path";
import { Option, type Command } from "commander";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { onShutdown } from "@trias/supervise";
import { configFileFrom } from "@trias/tools";
import { DEFAULT_KEY_DIR, DEFAULT_LOG_ROOT } from "../demo.js";
import { CliError, EXIT, out } from "../cli-kit.js";
import { Stack } from "../stack.js";

/**
 * `trias up`: the whole stack on this machine (an embedded nats-server, every agent its own
 * process) with the project's configuration and policy, until Ctrl-C. Prints what the CLI
 * and `trias mcp` need to reach it.
 */
export function registerUp(program: Command): void {
  program
    .command("up")
    .description(
      "run the stack with this project's trias.config.yaml (or TRIAS_CONFIG) and policy until Ctrl-C",
    )
    .addOption(
      new Option("--env <environment>", "policy environment (when TRIAS_POLICY is unset)")
        .choices(["dev", "staging", "prod", "kyc"])
        .default(process.env["TRIAS_ENV"] ?? "dev", "$TRIAS_ENV or dev"),
    )
    .action(async (o: { env: string }) => {
      if (!findNatsServer()) throw new CliError(EXIT.unavailable, NATS_INSTALL_HINT);
      const keyDir = resolve(process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR);
      const config = configFileFrom();
      const started: { stack?: Stack } = {};
      onShutdown(() => started.stack?.stop());
      const stack = await Stack.start({
        keyDir,
        logDir: join(DEFAULT_LOG_ROOT, new Date().toISOString().replace(/[:.]/g, "-")),
        environment: o.env,
        // The agents run from the installation's folder: paths from here are made absolute.
        ...(process.env["TRIAS_POLICY"]
          ? { policyFile: resolve(process.env["TRIAS_POLICY"]) }
          : {}),
        ...(config ? { env: { TRIAS_CONFIG: config } } : {}),
      });
      started.stack = stack;
      // A person registered while it runs (trias keys add-human) gets their NATS user at once.
      stack.followRegistry(
        (names) => out(`NATS user(s) added: ${names.join(", ")}`),
        (e) => out(`NATS users not reloaded: ${(e as Error).message}`),
      );
      const admin = stack.natsCredentials("admin");
      out(`trias up: every agent running, tools from ${config ?? "the shipped packs"}`);
      out("in another shell:");
      out(
        `  export NATS_URL=${stack.natsUrl} NATS_USER=${admin.user ?? ""} NATS_PASSWORD=${admin.pass ?? ""} TRIAS_KEY_DIR=${keyDir}`,
      );
      out("Ctrl-C stops everything.");
      await new Promise<never>(() => undefined);
    });
}
