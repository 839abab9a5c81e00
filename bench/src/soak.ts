/**
 * `pnpm soak`: Trias's own chaos soak (docs/soak.md). A whole stack on a random port with the
 * per-identity NATS credentials the stack ships, several concurrent submitters over a mix of
 * light, standard, full and rolled-back runs; first a calm phase, then chaos: SIGKILLs and
 * restarts of every agent, nats-server kills and restarts, a paused agent (SIGSTOP, SIGCONT).
 * At the end it checks what must hold whatever happened, reports run times and takeover
 * times as a table and JSON, and exits non-zero on any violation.
 */
import {
  closeSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { z } from "zod";
import { LocalNatsServer, MAX_REPLICAS, type StoredMessage } from "@trias/bus";
import {
  ConsoleClient,
  Stack,
  auditEvents,
  defaultAgents,
  processName,
  type AgentSpec,
} from "@trias/console";
import {
  decode,
  decodeFrame,
  parseSubject,
  type Message,
  type TaskSubmitted,
} from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { onShutdown } from "@trias/supervise";
import { LEDGER_BUCKET, Ledger, type LedgerState } from "@trias/tools";
import { rssBytes } from "./proc.js";
import { percentile, round } from "./stats.js";

/** The soak's options: one schema, each default where it is declared. */
const Options = z.object({
  /** Seconds of the whole load (calm, then chaos). @default 120 */
  duration: z.coerce.number().positive().default(120),
  /** Seconds at the start without chaos: the reference run times. @default 30 */
  calm: z.coerce.number().min(0).default(30),
  /** Concurrent submitters, each with one run in flight. @default 4 */
  submitters: z.coerce.number().int().min(1).max(64).default(4),
  /** Mean seconds between two chaos actions (each waits for the previous to end). @default 5 */
  chaosEvery: z.coerce.number().positive().default(5),
  /** Seconds the runs get to close after the load stops. @default 120 */
  settle: z.coerce.number().positive().default(120),
  /** An agent above this resident size is a violation (MB). @default 200 */
  maxRssMb: z.coerce.number().positive().default(200),
  /**
   * Takeover after a restart (ready to the next event of an affected run) above this is a
   * violation; 0 reports it only (a shared, loaded machine stretches it). @default 0
   */
  maxTakeoverMs: z.coerce.number().min(0).default(0),
  /** How the nats-server is stopped: SIGKILL (a crash) or SIGTERM (it drains). @default "SIGKILL" */
  natsSignal: z.enum(["SIGTERM", "SIGKILL"]).default("SIGKILL"),
  /** Seed of the chaos and the mix, for a repeatable schedule. @default the time */
  seed: z.coerce
    .number()
    .int()
    .default(() => Date.now() % 1_000_000),
  /** Where the JSON report goes. @default bench/results/soak-<time>.json */
  json: z.string().optional(),
  /**
   * Replicas of each agent identity (docs/scaling.md, section 2); chaos then kills and pauses
   * single replicas. @default 1
   */
  replicas: z.coerce.number().int().min(1).max(MAX_REPLICAS).default(1),
  /** Keep the stack's directory (keys, logs, store) after the run. @default false */
  keep: z.boolean().default(false),
});
type Options = z.infer<typeof Options>;

const HELP = `pnpm soak [options]
  --duration <s>        seconds of load, calm then chaos (default 120)
  --calm <s>            seconds without chaos first (default 30)
  --submitters <n>      concurrent submitters (default 4)
  --chaos-every <s>     mean seconds between chaos actions (default 5)
  --settle <s>          seconds for runs to close after the load (default 120)
  --max-rss-mb <mb>     agent resident size limit (default 200)
  --max-takeover-ms <ms> fail when a takeover after ready exceeds this (default 0: report only)
  --nats-signal <sig>   SIGKILL (default) or SIGTERM: how nats-server is stopped
  --seed <n>            chaos and mix seed
  --replicas <n>        replicas of each agent identity, 1 to 4 (default 1)
  --json <file>         JSON report path (default bench/results/soak-<time>.json)
  --keep                keep the stack directory (logs, store)`;

function readOptions(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      duration: { type: "string" },
      calm: { type: "string" },
      submitters: { type: "string" },
      "chaos-every": { type: "string" },
      settle: { type: "string" },
      "max-rss-mb": { type: "string" },
      "max-takeover-ms": { type: "string" },
      "nats-signal": { type: "string" },
      seed: { type: "string" },
      replicas: { type: "string" },
      json: { type: "string" },
      keep: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(HELP + "\n");
    process.exit(0);
  }
  const r = Options.safeParse({
    duration: values.duration,
    calm: values.calm,
    submitters: values.submitters,
    chaosEvery: values["chaos-every"],
    settle: values.settle,
    maxRssMb: values["max-rss-mb"],
    maxTakeoverMs: values["max-takeover-ms"],
    replicas: values.replicas,
    natsSignal: values["nats-signal"],
    seed: values.seed,
    json: values.json,
    keep: values.keep,
  });
  if (!r.success) throw new Error(`invalid options: ${z.prettifyError(r.error)}\n${HELP}`);
  if (r.data.calm >= r.data.duration)
    throw new Error(`--calm (${r.data.calm}) must be below --duration (${r.data.duration})`);
  return r.data;
}

/** mulberry32: a small seeded generator, so a schedule can be replayed with --seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

type RunKind = "light" | "standard" | "full" | "rollback";
/** Share of each kind in the mix (full runs are paced too: see FULL_MIN_GAP_MS). */
const MIX: readonly [RunKind, number][] = [
  ["light", 0.35],
  ["standard", 0.35],
  ["full", 0.1],
  ["rollback", 0.2],
];
/**
 * Full runs pay out a batch, which the shipped policies rate-limit (ledger.batch_payout:
 * 60 per minute); one every 2 s stays well inside it.
 */
const FULL_MIN_GAP_MS = 2_000;
const USERS = ["alice", "bob", "carol", "dave"] as const;

interface RunRecord {
  run: string;
  kind: RunKind;
  phase: "calm" | "chaos";
  submittedAt: number;
  /** Balance changes the run makes when it ends as expected. */
  deltas: Record<string, number>;
  expected: "completed" | "rolled_back";
  closedAt?: number;
  outcome?: string;
  reason?: string;
}

interface RunEvent {
  t: number;
  kind: string;
  sender: string;
}

type ChaosAction =
  { type: "kill"; agent: string } | { type: "pause"; agent: string } | { type: "nats" };

interface ChaosRecord {
  action: string;
  target: string;
  /** When the process was killed or stopped (ms since epoch). */
  at: number;
  /** When its successor was ready (or it was resumed, or the server listened again). */
  readyAt: number;
  /**
   * Runs the action held up, with their takeover: from the action (or from when the run
   * came to need the agent, if later) to the run's next event by that agent, and from the
   * agent's readiness to that event.
   */
  affected: { run: string; killToNextMs: number; readyToNextMs: number }[];
}

function task(
  kind: RunKind,
  n: number,
  pick: () => number,
): Omit<RunRecord, "run" | "phase" | "submittedAt"> & { task: TaskSubmitted } {
  const user = USERS[Math.floor(pick() * USERS.length)] ?? "alice";
  const amount = 1 + Math.floor(pick() * 9);
  switch (kind) {
    case "light":
      return {
        kind,
        task: {
          goal: "soak light",
          program: "balance-check",
          input: { account: user },
          requestedBy: "soak",
        },
        deltas: {},
        expected: "completed",
      };
    case "standard":
      return {
        kind,
        task: {
          goal: "soak standard",
          program: "transfer",
          input: { from: "treasury", to: user, amount },
          requestedBy: "soak",
        },
        deltas: { treasury: -amount, [user]: amount },
        expected: "completed",
      };
    case "full": {
      const other = USERS[(USERS.indexOf(user) + 1) % USERS.length] ?? "bob";
      return {
        kind,
        task: {
          goal: "soak full",
          program: "payout",
          input: {
            batch: `soak-${n}`,
            payouts: [
              { account: user, amount },
              { account: other, amount: 1 },
            ],
          },
          requestedBy: "soak",
        },
        deltas: { treasury: -(amount + 1), [user]: amount, [other]: 1 },
        expected: "completed",
      };
    }
    case "rollback":
      // A transfer, then a step whose outcome is never confirmed: retried, then rolled back.
      return {
        kind,
        task: {
          goal: "soak rollback",
          program: "steps",
          input: {
            steps: [
              { tool: "ledger.transfer", args: { from: "treasury", to: user, amount } },
              { tool: "flaky.write", args: { key: `soak-${n}`, passFromAttempt: 99 } },
            ],
          },
          requestedBy: "soak",
        },
        deltas: {},
        expected: "rolled_back",
      };
  }
}

/** Where an agent logs; the soak runs agents at info level to see their "ready" line. */
function logOf(stack: Stack, name: string): string {
  return join(stack.opts.logDir, `${name}.log`);
}

function sizeOf(file: string): number {
  try {
    return statSync(file).size;
  } catch {
    return 0;
  }
}

/** Wait for "<role> ready" in an agent's log after `from` bytes; the time it was seen. */
async function readyAfter(file: string, from: number, timeoutMs: number): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const size = sizeOf(file);
    if (size > from) {
      const fd = openSync(file, "r");
      try {
        const buf = Buffer.alloc(size - from);
        readSync(fd, buf, 0, buf.length, from);
        if (/(proposer|router|reviewer|executor|verifier) ready/.test(buf.toString("utf8")))
          return Date.now();
      } finally {
        closeSync(fd);
      }
    }
    await sleep(20);
  }
  throw new Error(`${file}: no "ready" line within ${timeoutMs} ms of the restart`);
}

function stats(values: readonly number[]) {
  const s = [...values].sort((a, b) => a - b);
  return {
    n: s.length,
    p50: round(percentile(s, 0.5) / 1000),
    p90: round(percentile(s, 0.9) / 1000),
    p99: round(percentile(s, 0.99) / 1000),
    max: round((s.at(-1) ?? Number.NaN) / 1000),
  };
}

async function main(): Promise<number> {
  const o = readOptions(process.argv.slice(2));
  const pick = rng(o.seed);
  const dir = mkdtempSync(join(tmpdir(), "trias-soak-"));
  const logDir = join(dir, "logs");
  let server: LocalNatsServer | null = null;
  const agents: AgentSpec[] = Array.from({ length: o.replicas }, (_, r) =>
    defaultAgents(2).map((a) => ({ ...a, replica: r + 1 })),
  ).flat();
  process.stdout.write(
    `soak: ${o.duration}s (${o.calm}s calm), ${o.submitters} submitters, chaos every ~${o.chaosEvery}s, seed ${o.seed}; stack in ${dir}\n`,
  );
  // ^C stops the stack (a paused agent is resumed first, so that it can drain).
  const started: { stack?: Stack; paused?: number | undefined } = {};
  const off = onShutdown(async () => {
    if (started.paused !== undefined) process.kill(started.paused, "SIGCONT");
    await started.stack?.stop();
  });
  const stack = await Stack.start({
    keyDir: join(dir, "keys"),
    logDir,
    environment: "dev",
    agents,
    env: { LOG_LEVEL: "info" },
    natsFactory: async (users) => {
      server = await LocalNatsServer.start({ users, logFile: join(logDir, "nats-server.log") });
      return server;
    },
  });
  started.stack = stack;
  const nats = server as LocalNatsServer | null;
  if (!nats) throw new Error("the stack did not start its nats-server");
  const registry = KeyRegistry.load(stack.registryFile);
  const client = new ConsoleClient(
    stack.admin,
    Signer.load(join(dir, "keys", keyFileName("console"))),
    registry,
  );
  const ledger = new Ledger(await stack.admin.kv(LEDGER_BUCKET));
  const initial: LedgerState = (await ledger.read()).state;
  const nameOf = (kid: string) => registry.get(kid)?.name ?? kid;

  // Follow the trace by reading it from the last sequence seen: an ephemeral watch would
  // not survive the nats-server restarts the soak inflicts.
  const runs = new Map<string, RunRecord>();
  const events = new Map<string, RunEvent[]>();
  const waiters = new Map<string, () => void>();
  // The stream is this soak's own: reading it from the start costs a few setup messages.
  let nextSeq = 1;
  let following = true;
  const follower = (async () => {
    while (following) {
      let batch: StoredMessage[] = [];
      try {
        batch = await stack.admin.readAll("trias.>", nextSeq);
      } catch {
        // The server is down or restarting: read again shortly.
      }
      for (const m of batch) {
        nextSeq = m.seq + 1;
        const parts = parseSubject(m.subject);
        const r = parts ? runs.get(parts.run) : undefined;
        if (!parts || !r) continue;
        let env: Message | undefined;
        try {
          env = decode(decodeFrame(m.data).payload) as Message;
        } catch {
          continue;
        }
        let list = events.get(r.run);
        if (!list) events.set(r.run, (list = []));
        list.push({ t: m.timestampMs, kind: env.kind, sender: nameOf(env.sender) });
        if (env.kind === "run_closed" && r.closedAt === undefined) {
          r.closedAt = m.timestampMs;
          r.outcome = env.body.outcome;
          r.reason = env.body.reason;
          waiters.get(r.run)?.();
        }
      }
      await sleep(batch.length > 0 ? 20 : 200);
    }
  })();

  // RSS of every agent process, sampled as they come and go.
  const rssMax = new Map<string, number>();
  const rssTimer = setInterval(() => {
    for (const a of agents) {
      const pid = stack.pid(processName(a));
      const rss = pid === undefined ? null : rssBytes(pid);
      if (rss !== null) rssMax.set(processName(a), Math.max(rssMax.get(processName(a)) ?? 0, rss));
    }
  }, 1_000);

  const t0 = Date.now();
  const chaosFrom = t0 + o.calm * 1000;
  const loadUntil = t0 + o.duration * 1000;
  let counter = 0;
  let lastFull = 0;
  const prefix = `soak${o.seed.toString(36)}`;
  const submitter = async (): Promise<void> => {
    while (Date.now() < loadUntil) {
      let kind: RunKind = "light";
      let x = pick();
      for (const [k, share] of MIX) {
        if (x < share) {
          kind = k;
          break;
        }
        x -= share;
      }
      if (kind === "full") {
        if (Date.now() - lastFull < FULL_MIN_GAP_MS) kind = "standard";
        else lastFull = Date.now();
      }
      const n = counter++;
      const run = `${prefix}-${n.toString(36)}`;
      const t = task(kind, n, pick);
      const rec: RunRecord = {
        run,
        kind: t.kind,
        phase: Date.now() < chaosFrom ? "calm" : "chaos",
        submittedAt: Date.now(),
        deltas: t.deltas,
        expected: t.expected,
      };
      runs.set(run, rec);
      const closed = new Promise<void>((r) => waiters.set(run, r));
      // The same run id on every attempt: the server keeps one task_submitted however many
      // times it is sent (its message id), so retrying through an outage is safe.
      for (;;) {
        try {
          await client.submit(t.task, run);
          break;
        } catch {
          await sleep(500);
        }
      }
      await Promise.race([closed, sleep(Math.max(1_000, loadUntil - Date.now() + 60_000))]);
      waiters.delete(run);
    }
  };

  // The chaos schedule: every agent killed, the server killed and an agent paused at least
  // once, in a seeded order; then random actions until the load ends.
  const names = agents.map(processName);
  const must: ChaosAction[] = (
    [
      ...names.map((agent): ChaosAction => ({ type: "kill", agent })),
      { type: "nats" },
      { type: "pause", agent: names[Math.floor(pick() * names.length)] ?? "executor" },
    ] satisfies ChaosAction[]
  ).sort(() => pick() - 0.5);
  const chaos: ChaosRecord[] = [];
  const openAt = (at: number) =>
    [...runs.values()].filter(
      (r) => r.submittedAt < at && (r.closedAt === undefined || r.closedAt > at),
    );
  const chaosLoop = async (): Promise<void> => {
    await sleep(Math.max(0, chaosFrom - Date.now()));
    while (Date.now() < loadUntil - 2_000) {
      const action: ChaosAction =
        must.shift() ??
        (() => {
          const x = pick();
          const agent = names[Math.floor(pick() * names.length)] ?? "executor";
          if (x < 0.1) return { type: "nats" } as const;
          if (x < 0.25) return { type: "pause", agent } as const;
          return { type: "kill", agent } as const;
        })();
      const open = new Set(openAt(Date.now()).map((r) => r.run));
      let at: number;
      let readyAt: number;
      let target: string;
      if (action.type === "kill") {
        target = action.agent;
        const spec = agents.find((a) => processName(a) === action.agent);
        if (!spec) throw new Error(`no agent ${action.agent}`);
        at = Date.now();
        await stack.kill(action.agent, "SIGKILL");
        await sleep(pick() * 500);
        const from = sizeOf(logOf(stack, action.agent));
        stack.spawnAgent(spec);
        readyAt = await readyAfter(logOf(stack, action.agent), from, 60_000);
      } else if (action.type === "pause") {
        target = action.agent;
        const pid = stack.pid(action.agent);
        at = Date.now();
        if (pid !== undefined) process.kill(pid, "SIGSTOP");
        started.paused = pid;
        await sleep(2_000 + pick() * 6_000);
        if (pid !== undefined) process.kill(pid, "SIGCONT");
        started.paused = undefined;
        readyAt = Date.now();
      } else {
        target = "nats-server";
        at = Date.now();
        await nats.stopProcess(o.natsSignal);
        await sleep(1_000 + pick() * 2_000);
        await nats.restart(join(logDir, "nats-server.log"));
        readyAt = Date.now();
      }
      chaos.push({
        action: action.type,
        target,
        at,
        readyAt,
        affected: [],
      });
      process.stdout.write(
        `  ${new Date(at).toISOString().slice(11, 19)} ${action.type} ${target}: ready after ${((readyAt - at) / 1000).toFixed(1)} s, ${open.size} run(s) open\n`,
      );
      const gap = o.chaosEvery * 1000 * (0.5 + pick());
      await sleep(Math.min(gap, Math.max(0, loadUntil - Date.now())));
    }
  };

  await Promise.all([...Array.from({ length: o.submitters }, submitter), chaosLoop()]);
  process.stdout.write(
    `load over after ${runs.size} runs; letting them close (up to ${o.settle}s)\n`,
  );
  const settleUntil = Date.now() + o.settle * 1000;
  while (Date.now() < settleUntil && [...runs.values()].some((r) => r.closedAt === undefined))
    await sleep(250);
  // One more read so the events of the last closes are in.
  await sleep(500);
  following = false;
  await follower;
  clearInterval(rssTimer);

  // --- checks -------------------------------------------------------------------------
  const violations: string[] = [];
  const all = [...runs.values()];
  const open = all.filter((r) => r.closedAt === undefined);
  if (open.length > 0)
    violations.push(
      `${open.length} run(s) never closed: ${open
        .slice(0, 10)
        .map((r) => r.run)
        .join(", ")}`,
    );
  for (const r of all) {
    if (r.outcome !== undefined && r.outcome !== r.expected)
      violations.push(
        `${r.run} (${r.kind}) closed ${r.outcome}, expected ${r.expected}: ${r.reason ?? ""}`,
      );
  }

  const final: LedgerState = (await ledger.read()).state;
  const sum = (s: LedgerState) => Object.values(s.accounts).reduce((n, a) => n + a.balance, 0);
  if (sum(final) !== sum(initial))
    violations.push(`money not conserved: ${sum(initial)} at the start, ${sum(final)} at the end`);
  const expected = new Map(Object.entries(initial.accounts).map(([k, a]) => [k, a.balance]));
  for (const r of all)
    if (r.outcome === r.expected)
      for (const [acct, d] of Object.entries(r.deltas))
        expected.set(acct, (expected.get(acct) ?? 0) + d);
  for (const [acct, want] of expected) {
    const got = final.accounts[acct]?.balance;
    if (got !== want) violations.push(`${acct}: the outcomes say ${want}, the ledger holds ${got}`);
  }

  // One read of the whole trace for exactly-once and the audit.
  const byRun = new Map<string, StoredMessage[]>();
  for (const m of await stack.admin.readAll("trias.>")) {
    const parts = parseSubject(m.subject);
    if (!parts || !runs.has(parts.run)) continue;
    let l = byRun.get(parts.run);
    if (!l) byRun.set(parts.run, (l = []));
    l.push(m);
  }
  let executed = 0;
  let compensated = 0;
  let audited = 0;
  for (const r of all) {
    const stored = byRun.get(r.run) ?? [];
    const effects = new Map<string, number>();
    const undone = new Map<string, number>();
    for (const m of stored) {
      if (!m.subject.startsWith("trias.executor.step_executed.")) continue;
      const env = decode(decodeFrame(m.data).payload) as Message;
      if (env.kind !== "step_executed") continue;
      effects.set(env.body.effectId, (effects.get(env.body.effectId) ?? 0) + 1);
      if (env.body.compensationOf !== null) {
        compensated++;
        undone.set(env.body.compensationOf, (undone.get(env.body.compensationOf) ?? 0) + 1);
      } else executed++;
    }
    for (const [id, n] of effects)
      if (n > 1) violations.push(`${r.run}: effect ${id} executed ${n} times`);
    for (const [digest, n] of undone)
      if (n > 1) violations.push(`${r.run}: step ${digest.slice(0, 12)} compensated ${n} times`);
    if (r.closedAt === undefined) continue;
    const report = auditEvents(registry, r.run, stored);
    if (report.ok && report.violations.length === 0) audited++;
    else
      violations.push(
        `${r.run}: audit failed: ${[...report.problems, ...report.violations.map((v) => v.reason)].slice(0, 3).join("; ")}`,
      );
  }
  for (const [name, rss] of rssMax)
    if (rss > o.maxRssMb * 1024 * 1024)
      violations.push(
        `${name} reached ${(rss / 1048576).toFixed(0)} MB RSS (limit ${o.maxRssMb} MB)`,
      );

  // --- takeover ----------------------------------------------------------------------
  for (const c of chaos) {
    const kept: ChaosRecord["affected"] = [];
    // Every run open at some point between the action and the recovery: a run submitted
    // while the proposer was dead waited for it as much as one that was open at the kill.
    const candidates = all.filter(
      (r) => r.submittedAt < c.readyAt && (r.closedAt === undefined || r.closedAt > c.at),
    );
    for (const r of candidates) {
      const evs = events.get(r.run) ?? [];
      // After a server kill every run waits for the server; after an agent's kill or pause,
      // a run waits only when it needs that agent: its first event by that identity after
      // the action is the one the successor (or the resumed process) produced.
      // With replicas, a replica's runs are not told apart from its siblings' (messages are
      // signed by the identity): every run the identity moved on counts.
      const identity = c.target.split("#")[0];
      const i = evs.findIndex((e) => e.t > c.at && (c.action === "nats" || e.sender === identity));
      const next = evs[i];
      if (!next) continue;
      const prev = i > 0 ? (evs[i - 1]?.t ?? r.submittedAt) : r.submittedAt;
      // Held from the action, or from when the run got to need the agent, if later.
      const since = Math.max(c.at, prev);
      // A run whose turn came only after the recovery was not held by this action.
      if (since >= c.readyAt) continue;
      kept.push({
        run: r.run,
        killToNextMs: next.t - since,
        readyToNextMs: Math.max(0, next.t - c.readyAt),
      });
    }
    c.affected = kept;
  }
  const agentChaos = chaos.filter((c) => c.action === "kill");
  const readyToNext = agentChaos.flatMap((c) => c.affected.map((a) => a.readyToNextMs));
  if (o.maxTakeoverMs > 0) {
    for (const c of agentChaos)
      for (const a of c.affected)
        if (a.readyToNextMs > o.maxTakeoverMs)
          violations.push(
            `${a.run} continued ${a.readyToNextMs} ms after ${c.target} was ready again (limit ${o.maxTakeoverMs} ms)`,
          );
  }

  // --- report ------------------------------------------------------------------------
  const runTime = (phase: "calm" | "chaos") =>
    stats(
      all
        .filter((r) => r.phase === phase && r.closedAt !== undefined)
        .map((r) => (r.closedAt ?? 0) - r.submittedAt),
    );
  const report = {
    options: o,
    runs: all.length,
    byKind: Object.fromEntries(MIX.map(([k]) => [k, all.filter((r) => r.kind === k).length])),
    executed,
    compensated,
    audited,
    runTimeS: { calm: runTime("calm"), chaos: runTime("chaos") },
    takeoverS: {
      agentKillToNext: stats(agentChaos.flatMap((c) => c.affected.map((a) => a.killToNextMs))),
      agentReadyToNext: stats(readyToNext),
      pauseToNext: stats(
        chaos
          .filter((c) => c.action === "pause")
          .flatMap((c) => c.affected.map((a) => a.killToNextMs)),
      ),
      natsKillToNext: stats(
        chaos
          .filter((c) => c.action === "nats")
          .flatMap((c) => c.affected.map((a) => a.killToNextMs)),
      ),
      natsReadyToNext: stats(
        chaos
          .filter((c) => c.action === "nats")
          .flatMap((c) => c.affected.map((a) => a.readyToNextMs)),
      ),
    },
    chaos: chaos.map((c) => ({
      action: c.action,
      target: c.target,
      at: new Date(c.at).toISOString(),
      readyAfterS: round((c.readyAt - c.at) / 1000),
      affected: c.affected.length,
      maxKillToNextS: round(Math.max(0, ...c.affected.map((a) => a.killToNextMs)) / 1000),
      maxReadyToNextS: round(Math.max(0, ...c.affected.map((a) => a.readyToNextMs)) / 1000),
    })),
    rssMb: Object.fromEntries([...rssMax].map(([k, v]) => [k, round(v / 1048576, 1)])),
    violations,
  };

  const row = (label: string, s: ReturnType<typeof stats>) =>
    `  ${label.padEnd(34)} ${String(s.n).padStart(5)} ${[s.p50, s.p90, s.p99, s.max].map((x) => (Number.isFinite(x) ? x.toFixed(3) : "-").padStart(8)).join("")}`;
  const lines = [
    "",
    `runs: ${report.runs} (${Object.entries(report.byKind)
      .map(([k, n]) => `${k} ${n}`)
      .join(", ")}); steps executed ${executed}, compensations ${compensated}; audited ${audited}`,
    "",
    `  ${"seconds".padEnd(34)} ${"n".padStart(5)}${["p50", "p90", "p99", "max"].map((h) => h.padStart(8)).join("")}`,
    row("run time, calm", report.runTimeS.calm),
    row("run time, under chaos", report.runTimeS.chaos),
    row("agent kill -> next event", report.takeoverS.agentKillToNext),
    row("agent ready -> next event", report.takeoverS.agentReadyToNext),
    row("agent pause -> next event", report.takeoverS.pauseToNext),
    row("nats kill -> next event", report.takeoverS.natsKillToNext),
    row("nats ready -> next event", report.takeoverS.natsReadyToNext),
    "",
    "chaos:",
    ...report.chaos.map(
      (c) =>
        `  ${c.at.slice(11, 19)} ${c.action.padEnd(5)} ${c.target.padEnd(11)} ready ${c.readyAfterS.toFixed(1)} s, ${String(c.affected).padStart(3)} run(s) held, max kill->next ${c.maxKillToNextS.toFixed(2)} s, ready->next ${c.maxReadyToNextS.toFixed(2)} s`,
    ),
    "",
    `agent RSS max (MB): ${Object.entries(report.rssMb)
      .map(([k, v]) => `${k} ${v}`)
      .join(", ")}`,
    "",
    violations.length === 0 ? "no violations" : `${violations.length} VIOLATION(S):`,
    ...violations.slice(0, 50).map((v) => `  - ${v}`),
  ];
  process.stdout.write(lines.join("\n") + "\n");
  const jsonPath = resolve(
    o.json ??
      join(
        import.meta.dirname,
        "..",
        "results",
        `soak-${new Date().toISOString().replace(/[:.]/g, "-")}.json`,
      ),
  );
  mkdirSync(dirname(jsonPath), { recursive: true });
  writeFileSync(jsonPath, JSON.stringify(report, null, 2) + "\n");
  process.stdout.write(`report: ${jsonPath}\n`);

  await stack.stop();
  off();
  if (o.keep) process.stdout.write(`stack directory kept: ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
  return violations.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(2);
  },
);
