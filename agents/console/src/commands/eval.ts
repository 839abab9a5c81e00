import type { Command } from "commander";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { CliError, EXIT, nonNegativeInt, out, usage } from "../cli-kit.js";
import { bold, dim } from "../format.js";
import { ledgerCorpus } from "../eval/corpus.js";
import { PAPER, runEval, type EvalReport } from "../eval/run.js";

/**
 * How many corpus runs are open at once.
 * @default 8
 */
const EVAL_CONCURRENCY = 8;
/**
 * How long one wave of runs may take to close.
 * @default 60000
 */
const EVAL_TIMEOUT_MS = 60_000;

const pct = (x: number | null) => (x === null ? "-" : `${(x * 100).toFixed(1)} %`);

function printTable(r: EvalReport): void {
  out(bold(`trias eval: ${r.corpus} labelled ledger tasks`));
  const rows: [string, (m: EvalReport["policies"][number]) => string, string][] = [
    [
      "wrong tier (over/under)",
      (m) => `${pct(m.wrongTierRate)} (${m.overTier}/${m.underTier} of ${m.steps})`,
      pct(PAPER.wrongTierRate),
    ],
    ["unreviewed risky executions", (m) => String(m.unreviewedRisky), "-"],
    ["seeded bad steps caught", (m) => `${m.seededBadCaught}/${m.seededBad}`, "-"],
    ["review calls", (m) => String(m.reviewCalls), "-"],
    ["mean latency", (m) => `${m.meanLatencyMs} ms`, "-"],
    ["success", (m) => `${pct(m.successRate)} (${m.success}/${m.tasks})`, pct(PAPER.successRate)],
    ["still open", (m) => String(m.open), "-"],
  ];
  out(`  ${"".padEnd(30)}${r.policies.map((p) => p.policy.padEnd(26)).join("")}paper`);
  for (const [name, f, paper] of rows)
    out(`  ${name.padEnd(30)}${r.policies.map((p) => f(p).padEnd(26)).join("")}${paper}`);
  out(
    `  ${"review calls vs always-full".padEnd(30)}${pct(r.costReduction === null ? null : -r.costReduction).padEnd(52)}${pct(-PAPER.costReduction)}`,
  );
  out(
    `  ${"latency vs always-full".padEnd(30)}${pct(r.latencyReduction === null ? null : -r.latencyReduction).padEnd(52)}${pct(-PAPER.latencyReduction)}`,
  );
  out(
    dim(
      "  the paper's cost is LLM spend; here it is review calls (rules reviewers, no model tokens)",
    ),
  );
}

export function registerEval(program: Command): void {
  program
    .command("eval")
    .description(
      "run the labelled governance corpus under the dev policy and under always-full review (docs/eval.md)",
    )
    .option("--limit <n>", "only the first n tasks of each family", nonNegativeInt("--limit"))
    .option(
      "--concurrency <n>",
      "runs open at once",
      nonNegativeInt("--concurrency"),
      EVAL_CONCURRENCY,
    )
    .option(
      "--timeout-ms <ms>",
      "how long a wave of runs may take",
      nonNegativeInt("--timeout-ms"),
      EVAL_TIMEOUT_MS,
    )
    .option("--json", "print the report as JSON")
    .action(
      async (o: { limit?: number; concurrency: number; timeoutMs: number; json?: boolean }) => {
        if (o.concurrency === 0) throw usage("--concurrency must be at least 1");
        if (!findNatsServer()) throw new CliError(EXIT.unavailable, NATS_INSTALL_HINT);
        const all = ledgerCorpus();
        const tasks =
          o.limit === undefined
            ? all
            : all.filter((t) => Number(t.id.slice(t.id.lastIndexOf("-") + 1)) < (o.limit ?? 0));
        const report = await runEval({
          tasks,
          concurrency: o.concurrency,
          timeoutMs: o.timeoutMs,
          ...(o.json ? {} : { log: (l: string) => out(dim(l)) }),
        });
        if (o.json) out(JSON.stringify(report, null, 2));
        else printTable(report);
        // A measurement, not a gate: only runs left open (a stuck stack) fail the command.
        process.exitCode = report.policies.every((p) => p.open === 0) ? 0 : 1;
      },
    );
}
