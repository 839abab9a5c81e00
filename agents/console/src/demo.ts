import { mkdirSync } from "node:fs";
import { join } from "node:path";
import type { StoredMessage } from "@trias/bus";
import { maskSealed, type MessageOf, type TaskSubmitted } from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName, type Opened } from "@trias/signing";
import { onShutdown } from "@trias/supervise";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { auditEvents, exportTrace, readRun } from "./audit.js";
import { ConsoleClient } from "./client.js";
import { bold, describe, dim, green, red, yellow } from "./format.js";
import { decideAsHuman } from "./human.js";
import { eraseSubject, sealTaskInput, subjectKeys } from "./privacy.js";
import { Stack, REPO_ROOT } from "./stack.js";
import { ConsoleServer } from "./web/server.js";

export interface DemoTask {
  task: TaskSubmitted;
  /** What a governed run of this task should end as. */
  expect: MessageOf<"run_closed">["body"]["outcome"];
  /** A step that waits for a person gets this decision, signed with the human key (as `trias approve`). */
  human?: "approve" | "reject";
}

/** The demo's scenarios: the ledger's task set, or KYC onboarding with erasure (docs/privacy.md). */
export const DEMO_SCENARIOS = ["ledger", "kyc"] as const;
export type DemoScenario = (typeof DEMO_SCENARIOS)[number];

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

/**
 * Three invented customers (docs/privacy.md): one clear, one from a high-risk country whose
 * account a person approves, one on the shipped sanctions list. Subject ids are new each time:
 * an erased subject cannot be onboarded again under its id, and a server given by NATS_URL
 * keeps its key store across demos.
 */
export function kycDemoTasks(suffix: string): DemoTask[] {
  const customer = (
    n: number,
    goal: string,
    facts: { country: string; monthlyVolume: number },
    personal: { name: string; dob: string; email: string; document: string },
  ): TaskSubmitted => ({
    goal,
    program: "kyc",
    input: { subject: `c-demo-${suffix}-${n}`, ...facts, pep: false, personal },
    requestedBy: "demo",
  });
  return [
    {
      task: customer(
        1,
        "Onboard a customer (low risk)",
        { country: "FR", monthlyVolume: 900 },
        {
          name: "Amelie Dufresne-Demo",
          dob: "1988-06-14",
          email: "amelie.demo@example.org",
          document: "FR7730214",
        },
      ),
      expect: "completed",
    },
    {
      task: customer(
        2,
        "Onboard a customer from a high-risk country",
        { country: "XR", monthlyVolume: 4000 },
        {
          name: "Rostam Velaryan-Demo",
          dob: "1979-02-03",
          email: "rostam.demo@example.net",
          document: "XR5518820",
        },
      ),
      expect: "completed",
      human: "approve",
    },
    {
      task: customer(
        3,
        "Onboard a customer on the sanctions list",
        { country: "DE", monthlyVolume: 700 },
        {
          name: "Boris Vantablack",
          dob: "1966-09-21",
          email: "b.vantablack@example.com",
          document: "DE4402917",
        },
      ),
      expect: "rolled_back",
    },
  ];
}

export interface DemoOptions {
  /** Which task set to run. @default "ledger" */
  scenario?: DemoScenario;
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
  const started: { stack?: Stack; web?: ConsoleServer } = {};
  const off = onShutdown(async () => {
    await started.web?.stop();
    await started.stack?.stop();
  });
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
    const web = new ConsoleServer({
      bus: stack.admin,
      registry: KeyRegistry.load(stack.registryFile),
      registryFile: stack.registryFile,
    });
    o.out(`  ${bold("console")} at ${await web.start()} (while the demo runs)`);
    started.web = web;
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
    const kyc = o.scenario === "kyc";
    const tasks = kyc ? kycDemoTasks(Date.now().toString(36)) : DEMO_TASKS;
    for (const demo of tasks) {
      // Personal fields leave the console sealed, as `trias submit kyc` sends them.
      const input = await sealTaskInput(() => subjectKeys(stack.admin), demo.task.input);
      const { run } = await client.submit({ ...demo.task, input });
      runs.push({ run, demo });
    }
    const human = Signer.load(join(o.keyDir, keyFileName("human-operator")));
    const decisions: Promise<void>[] = [];
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
      const m = op.message;
      const decision = runs.find((r) => r.run === m.run)?.demo.human;
      if (m.kind === "tier_assigned" && m.body.requires.human && m.step !== null && decision) {
        const step = m.step;
        // The demo plays the person: the same signed verdict `trias approve <run> <step>` sends.
        decisions.push(
          decideAsHuman(stack.admin, registry, human, m.run, step, decision, "the demo's person")
            .then(() =>
              o.out(
                `${dim(label ?? "")} ${bold(`${human.name} ${decision === "approve" ? "approved" : "rejected"} step ${step}`)} ${dim(`(as: trias ${decision} ${m.run} ${step})`)}`,
              ),
            )
            .catch((e: unknown) =>
              o.out(red(`  the human decision on ${m.run} failed: ${String(e)}`)),
            ),
        );
      }
    };
    const closed = await client.waitForClose(
      runs.map((r) => r.run),
      o.timeoutMs,
      onMessage,
      fromSeq,
    );
    await Promise.all(decisions);
    let bad = 0;
    if (kyc) bad += await eraseFirst(o, client, registry, runs[0]?.run, tasks[0]);

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
    await started.web?.stop();
    await stack.stop();
  }
}

/**
 * Crypto-shredding shown: erase the first customer, then audit their run again (the receipts
 * cover ciphertext, so they still verify) and replay a step with the fields shown as erased.
 */
async function eraseFirst(
  o: DemoOptions,
  client: ConsoleClient,
  registry: KeyRegistry,
  run: string | undefined,
  demo: DemoTask | undefined,
): Promise<number> {
  const subject = (demo?.task.input as { subject?: string } | undefined)?.subject;
  if (!run || !subject) return 0;
  o.out("");
  const erased = await eraseSubject(client, subject, "the demo's erasure request", "demo");
  o.out(
    `${bold("Erasure")} ${subject}: key ${erased.keyDestroyed ? "destroyed" : "already gone"}, recorded in ${erased.run} ${dim(`(as: trias erase ${subject} --reason ...)`)}`,
  );
  const events = await readRun(client.bus, run);
  const report = auditEvents(registry, run, events);
  const check = events
    .map((e) => registry.open(e.data).message)
    .find((m) => m.kind === "step_proposed" && m.body.tool === "kyc.check_identity");
  const shown = check?.kind === "step_proposed" ? check.body.args : {};
  o.out(
    `  ${report.ok ? green("audit ok after erasure") : red(`audit FAILED after erasure: ${report.problems[0] ?? ""}`)}; replayed identity check: ${JSON.stringify(maskSealed(shown, new Set([subject])))}`,
  );
  return report.ok ? 0 : 1;
}

export const DEFAULT_KEY_DIR = join(REPO_ROOT, ".trias", "keys");
export const DEFAULT_LOG_ROOT = join(REPO_ROOT, ".trias", "logs");
