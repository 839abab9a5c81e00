import type { Command } from "commander";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { CliError, EXIT, nonNegativeInt, out, usage } from "../cli-kit.js";
import { bold, dim, green, red, yellow } from "../format.js";
import { ATTACKS, FAILING_VERDICTS, type LabVerdict } from "../lab/attacks.js";
import { runLab, unknownAttacks, type LabReport } from "../lab/run.js";

/**
 * How long each attack waits for the reaction it expects (a refusal, an execution, a close).
 * @default 20000
 */
const LAB_TIMEOUT_MS = 20_000;
/**
 * The lab policy's review window: a step missing a reviewer is refused after it.
 * @default 3000
 */
const LAB_REVIEW_TIMEOUT_MS = 3_000;
/** @default 1 */
const LAB_TRIALS = 1;
/** @default 1 */
const LAB_SEED = 1;

const paint = (v: LabVerdict): string =>
  v === "defended" ? green(v) : v === "not_available" ? yellow(v) : red(v);

function printTable(r: LabReport): void {
  const width = Math.max(...r.rows.map((x) => x.attack.length));
  out(bold(`trias lab: ${r.trials} trial(s), seed ${r.seed}`));
  for (const x of r.rows) {
    out(
      `  ${dim(`#${x.trial}`)} ${x.attack.padEnd(width)}  ${paint(x.verdict).padEnd(13)} ${x.observed}`,
    );
    out(dim(`       expected: ${x.expected} (invariant ${x.invariants.join(", ")})`));
  }
  const failing = r.rows.filter((x) => FAILING_VERDICTS.includes(x.verdict));
  const na = [...new Set(r.rows.filter((x) => x.verdict === "not_available").map((x) => x.attack))];
  out("");
  out(
    failing.length === 0
      ? green(`every attack met the outcome its invariants demand`)
      : red(
          `${failing.length} attack trial(s) did not: ${[...new Set(failing.map((x) => x.attack))].join(", ")}`,
        ),
  );
  if (na.length > 0) out(yellow(`not available (not counted as passed): ${na.join(", ")}`));
}

export function registerLab(program: Command): void {
  program
    .command("lab")
    .description(
      "run named attacks against a live stack; each is judged by what happened (docs/lab.md)",
    )
    .option(
      "--trials <n>",
      "how many times to run each attack, with parameters drawn from the seed",
      nonNegativeInt("--trials"),
      LAB_TRIALS,
    )
    .option("--seed <n>", "seed of the trials' parameters", nonNegativeInt("--seed"), LAB_SEED)
    .option("--attack <name...>", `only these attacks (${ATTACKS.map((a) => a.name).join(", ")})`)
    .option(
      "--timeout-ms <ms>",
      "how long each attack waits for the reaction it expects",
      nonNegativeInt("--timeout-ms"),
      LAB_TIMEOUT_MS,
    )
    .option(
      "--review-timeout-ms <ms>",
      "review window of the lab's policy (the shipped dev policy otherwise)",
      nonNegativeInt("--review-timeout-ms"),
      LAB_REVIEW_TIMEOUT_MS,
    )
    .option("--json", "print the report as JSON")
    .action(
      async (o: {
        trials: number;
        seed: number;
        attack?: string[];
        timeoutMs: number;
        reviewTimeoutMs: number;
        json?: boolean;
      }) => {
        const only = o.attack ?? [];
        const unknown = unknownAttacks(only);
        if (unknown.length > 0)
          throw usage(
            `unknown attack(s): ${unknown.join(", ")}; the lab knows ${ATTACKS.map((a) => a.name).join(", ")}`,
          );
        if (o.trials === 0) throw usage("--trials must be at least 1");
        if (o.reviewTimeoutMs === 0) throw usage("--review-timeout-ms must be at least 1");
        const natsUrl = process.env["NATS_URL"];
        if (!natsUrl && !findNatsServer()) throw new CliError(EXIT.unavailable, NATS_INSTALL_HINT);
        const keyDir = process.env["TRIAS_KEY_DIR"];
        const report = await runLab({
          ...(natsUrl ? { natsUrl } : {}),
          ...(natsUrl && keyDir ? { keyDir } : {}),
          trials: o.trials,
          seed: o.seed,
          only,
          timeoutMs: o.timeoutMs,
          reviewTimeoutMs: o.reviewTimeoutMs,
          ...(o.json ? {} : { log: (l: string) => out(dim(l)) }),
        });
        if (o.json) out(JSON.stringify(report, null, 2));
        else printTable(report);
        process.exitCode = report.exitCode;
      },
    );
}
