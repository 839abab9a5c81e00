import { Option, type Command } from "commander";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import {
  runDemo,
  DEFAULT_KEY_DIR,
  DEFAULT_LOG_ROOT,
  DEMO_SCENARIOS,
  type DemoScenario,
} from "../demo.js";
import { CliError, EXIT, nonNegativeInt, out, usage } from "../cli-kit.js";

/**
 * How long the demo waits for its runs to close.
 * @default 60000
 */
const DEMO_TIMEOUT_MS = 60_000;

export function registerDemo(program: Command): void {
  program
    .command("demo")
    .description(
      "the main job: governed runs on an embedded nats-server, every agent its own process",
    )
    .addOption(
      new Option("--env <environment>", "policy environment")
        .choices(["dev", "staging", "prod"])
        .default(process.env["TRIAS_ENV"] ?? "dev", "$TRIAS_ENV or dev"),
    )
    .addOption(
      new Option(
        "--scenario <name>",
        "ledger: payments across every tier; kyc: onboarding under the kyc policy (sealed personal data, a person approving a high-risk customer, a sanctioned one refused, an erasure)",
      )
        .choices(DEMO_SCENARIOS)
        .default("ledger"),
    )
    .option(
      "--timeout-ms <ms>",
      "how long to wait for the runs to close",
      nonNegativeInt("--timeout-ms"),
      DEMO_TIMEOUT_MS,
    )
    .action(async (o: { env: string; scenario: DemoScenario; timeoutMs: number }, cmd: Command) => {
      const natsUrl = process.env["NATS_URL"];
      // The KYC scenario runs under its own policy (deploy/policies/kyc.yaml).
      if (o.scenario === "kyc" && cmd.getOptionValueSource("env") === "cli")
        throw usage(
          "--env does not apply to --scenario kyc: it runs under the kyc policy (deploy/policies/kyc.yaml)",
        );
      if (!natsUrl && !findNatsServer()) throw new CliError(EXIT.unavailable, NATS_INSTALL_HINT);
      process.exitCode = await runDemo({
        scenario: o.scenario,
        environment: o.scenario === "kyc" ? "kyc" : o.env,
        keyDir: process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR,
        logRoot: DEFAULT_LOG_ROOT,
        ...(natsUrl ? { natsUrl } : {}),
        timeoutMs: o.timeoutMs,
        out,
      });
    });
}
