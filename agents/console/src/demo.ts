import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { StoredMessage } from "@trias/bus";
import type { MessageOf, TaskSubmitted } from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName, type Opened } from "@trias/signing";
import { onShutdown } from "@trias/supervise";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { auditEvents, exportTrace, readRun } from "./audit.js";
import { ConsoleClient } from "./client.js";
import { bold, describe, dim, green, red, yellow } from "./format.js";
import { Stack, REPO_ROOT } from "./stack.js";

export interface DemoTask {
  task: TaskSubmitted;
  /** What a governed run of this task should end as. */
  expect: MessageOf<"run_closed">["body"]["outcome"];
}

/** A task set that exercises every tier, and one step the policy refuses. */
export const DEMO_TASKS: DemoTask[] = [
  {
    task: {
      goal: "What is alice's balance?",
      program: "balance-check",
      input: { account: "alice" },
      requestedBy: "demo",
    },
    expect: "completed",
  },
  {
    task: {
      goal: "Pay bob 50 from alice",
      program: "transfer",
      input: { from: "alice", to: "bob", amount: 50 },
      requestedBy: "demo",
    },
    expect: "completed",
  },
  {
    task: {
      goal: "Month-end payout to three contractors",
      program: "payout",
      input: {
        batch: "2026-11",
        payouts: [
          { account: "bob", amount: 120 },
          { account: "carol", amount: 80 },
          { account: "dave", amount: 200 },
        ],
      },
      requestedBy: "demo",
    },
    expect: "completed",
  },
  {
    task: {
      goal: "Move 20,000 from treasury to carol",
      program: "transfer",
      input: { from: "treasury", to: "carol", amount: 20000 },
      requestedBy: "demo",
    },
    expect: "rejected",
  },
];

export interface DemoOptions {
  environment: string;
  keyDir: string;
  logRoot: string;
  natsUrl?: string;
  timeoutMs: number;
  out: (line: string) => void;
}

export async function runDemo(o: DemoOptions): Promise<number> {
  const logDir = join(o.logRoot, new Date().toISOString().replace(/[:.]/g, "-"));
  o.out(bold("Trias: governed runs across separate signed processes"));
  o.out(dim(`  environment ${o.environment} · keys ${o.keyDir} · logs ${logDir}`));
  const t0 = Date.now();
  // Installed before the stack starts: a signal during the start still stops what exists
  // (the agents and nats-server are tracked by @trias/supervise and signalled on exit).
  const started: { stack?: Stack } = {};
  const off = onShutdown(() => started.stack?.stop());
  const stack = await Stack.start({
    keyDir: o.keyDir,
    logDir,
    environment: o.environment,
    ...(o.natsUrl ? { natsUrl: o.natsUrl } : {}),
  });
  started.stack = stack;
  try {
    o.out(
      dim(
        `  nats ${stack.server ? `embedded at ${stack.natsUrl}` : stack.natsUrl} · ${stack.opts.agents?.map((a) => a.name).join(", ")} running as separate processes (${Date.now() - t0} ms)`,
      ),
    );
    const registry = KeyRegistry.load(stack.registryFile);
    const signer = Signer.load(join(o.keyDir, keyFileName("console")));
    const client = new ConsoleClient(stack.admin, signer, registry);
    const ledger = new Ledger(await stack.admin.kv(LEDGER_BUCKET));
    const before = (await ledger.read()).state.accounts;
    o.out(
      dim(
        `  ledger: ${Object.entries(before)
          .map(([n, a]) => `${n} ${a.balance}`)
          .join(", ")}`,
      ),
    );
    o.out("");

    const fromSeq = (await stack.admin.lastSeq()) + 1;
    const runs: { run: string; demo: DemoTask }[] = [];
    for (const demo of DEMO_TASKS) {
      const { run } = await client.submit(demo.task);
      runs.push({ run, demo });
    }
    const tiers = new Map<string, Set<string>>();
    const labels = new Map(runs.map((r, i) => [r.run, `[${i + 1}]`]));
    const onMessage = (op: Opened | null, raw: StoredMessage, err?: unknown) => {
      if (!op) {
        o.out(
          `  ${yellow("unverifiable message")} on ${raw.subject}: ${String((err as Error)?.message ?? err)}`,
        );
        return;
      }
      if (op.message.kind === "tier_assigned" && op.message.body.denied === null) {
        const s = tiers.get(op.message.run) ?? new Set<string>();
        s.add(op.message.body.tier);
        tiers.set(op.message.run, s);
      }
      const line = describe(op.message, op.key);
      const label = labels.get(op.message.run);
      if (line) o.out(label ? `${dim(label)} ${line.replace(/^ {2}/, "")}` : line);
    };
    const closed = await client.waitForClose(
      runs.map((r) => r.run),
      o.timeoutMs,
      onMessage,
      fromSeq,
    );
    let bad = 0;

    // Save each run's trace and audit it offline: every signature, every link of the receipt.
    const traceDir = join(o.logRoot, "..", "traces");
    mkdirSync(traceDir, { recursive: true });
    const audits = new Map<string, string>();
    for (const { run } of runs) {
      const events = await readRun(stack.admin, run);
      exportTrace(join(traceDir, `${run}.trace`), run, events);
      const report = auditEvents(registry, run, events);
      audits.set(
        run,
        report.ok ? green("audit ok") : red(`audit FAILED: ${report.problems[0] ?? ""}`),
      );
      if (!report.ok) bad++;
    }

    o.out("");
    o.out(
      `${bold("Summary")} ${dim("(✓: the run ended as the demo expects, a refusal by policy included)")}`,
    );
    for (const { run, demo } of runs) {
      const c = closed.get(run);
      const outcome = c?.body.outcome ?? "still open";
      const as = outcome === demo.expect;
      if (!as) bad++;
      const mark = as ? green("✓") : red("✗");
      o.out(
        `  ${mark} ${run}  ${demo.task.goal.padEnd(40)} ${(c ? (outcome === "completed" ? green(outcome) : yellow(outcome)) : red(outcome)).padEnd(12)} tiers ${[...(tiers.get(run) ?? [])].join("+") || "-"}  ${dim(c ? `receipt ${c.body.receipt.head.slice(0, 12)}…` : "")} ${audits.get(run) ?? ""}${as ? "" : red(` (expected ${demo.expect})`)}`,
      );
    }
    const after = (await ledger.read()).state.accounts;
    o.out(
      dim(
        `  ledger: ${Object.entries(after)
          .map(([n, a]) => `${n} ${a.balance}${a.open ? "" : " (closed)"}`)
          .join(", ")}`,
      ),
    );
    o.out(
      dim(
        `  ${runs.length} runs in ${((Date.now() - t0) / 1000).toFixed(1)} s; agent logs in ${logDir}`,
      ),
    );
    o.out(
      dim(
        `  audit or replay a run offline: ./dev pnpm trias audit --file ${join(traceDir, `${runs[0]?.run ?? "<run>"}.trace`)}`,
      ),
    );
    return bad === 0 ? 0 : 1;
  } finally {
    off();
    await stack.stop();
  }
}

export const DEFAULT_KEY_DIR = join(REPO_ROOT, ".trias", "keys");
export const DEFAULT_LOG_ROOT = join(REPO_ROOT, ".trias", "logs");
