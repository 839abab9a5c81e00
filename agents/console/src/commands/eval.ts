import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Command } from "commander";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { CliError, EXIT, nonNegativeInt, out, usage } from "../cli-kit.js";
import { bold, dim } from "../format.js";
import { CORPUS_PACKS, fullCorpus } from "../eval/corpus.js";
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
  const packs = Object.keys(r.policies[0]?.byPack ?? {}).join(", ");
  out(bold(`trias eval: ${r.corpus} labelled tasks (${packs})`));
  out(
    dim("  governance figures over the ledger, kyc, code and fs tasks; topology alarms over all"),
  );
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
    ["human decisions", (m) => String(m.humanDecisions), "-"],
    [
      "topology alarms: ordinary",
      (m) =>
        `${pct(m.topology.ordinary ? m.topology.ordinaryAlarms / m.topology.ordinary : null)} (${m.topology.ordinaryAlarms}/${m.topology.ordinary})`,
      "<= 2 %",
    ],
    [
      "topology alarms: thrashing",
      (m) =>
        `${pct(m.topology.thrashing ? m.topology.thrashingAlarms / m.topology.thrashing : null)} (${m.topology.thrashingAlarms}/${m.topology.thrashing})`,
      "100 %",
    ],
    ...CORPUS_PACKS.filter((p) => r.policies[0]?.byPack[p]).map(
      (p): [string, (m: EvalReport["policies"][number]) => string, string] => [
        `  ${p}: tier / bad / ok`,
        (m) => {
          const b = m.byPack[p];
          return b
            ? `${b.overTier}+${b.underTier}/${b.steps} ${b.seededBadCaught}/${b.seededBad} ${b.success}/${b.tasks}`
            : "-";
        },
        "-",
      ],
    ),
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
      "--packs <list>",
      `only these packs' tasks, comma-separated (${CORPUS_PACKS.join(", ")})`,
      CORPUS_PACKS.join(","),
    )
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
      async (o: {
        limit?: number;
        packs: string;
        concurrency: number;
        timeoutMs: number;
        json?: boolean;
      }) => {
        if (o.concurrency === 0) throw usage("--concurrency must be at least 1");
        const packs = o.packs.split(",").map((p) => p.trim());
        const unknown = packs.filter((p) => !(CORPUS_PACKS as readonly string[]).includes(p));
        if (unknown.length > 0 || packs.length === 0)
          throw usage(
            `--packs: unknown pack ${unknown.join(", ") || "(none)"}; the packs are ${CORPUS_PACKS.join(", ")}`,
          );
        if (!findNatsServer()) throw new CliError(EXIT.unavailable, NATS_INSTALL_HINT);
        // The filesystem server's root: the corpus names files under it.
        const fsRoot = mkdtempSync(join(tmpdir(), "trias-eval-files-"));
        try {
          const tasks = fullCorpus(fsRoot).filter(
            (t) =>
              packs.includes(t.pack) &&
              (o.limit === undefined || Number(t.id.slice(t.id.lastIndexOf("-") + 1)) < o.limit),
          );
          const report = await runEval({
            tasks,
            fsRoot,
            concurrency: o.concurrency,
            timeoutMs: o.timeoutMs,
            ...(o.json ? {} : { log: (l: string) => out(dim(l)) }),
          });
          if (o.json) out(JSON.stringify(report, null, 2));
          else printTable(report);
          // A measurement, not a gate: only runs left open (a stuck stack) fail the command.
          process.exitCode = report.policies.every((p) => p.open === 0) ? 0 : 1;
        } finally {
          rmSync(fsRoot, { recursive: true, force: true });
        }
      },
    );
}
