import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalNatsServer, type Subscription } from "@trias/bus";
import { startTestCluster } from "@trias/testing";
import { ConsoleClient, Stack, defaultAgents, processName } from "@trias/console";
import { decode, decodeFrame, parseSubject, runOfSubject, type Message } from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { CpuMeter } from "./proc.js";

export type Tier = "light" | "standard" | "full";
export const TIERS: readonly Tier[] = ["light", "standard", "full"];
/**
 * A step's phases. In a run of several steps a step starts when the previous one is
 * verified (the proposer's turn); the first step of a run starts at the submission, and a
 * run of one step ends at run_closed (the receipt), which is its own phase.
 */
export const PHASES = ["propose", "route", "review", "execute", "verify", "close"] as const;

/** What one measured interval of a case gives. */
export interface Segment {
  steps: number;
  wallMs: number;
  latencies: number[];
  failures: string[];
  /** CPU milliseconds per process over the interval. */
  cpuMs: Record<string, number>;
  /** Per-phase durations (ms) of each step, from the stored message timestamps. */
  phases: Record<string, number[]>;
  /** How long reading the trace back for the phases took (not part of any figure). */
  readMs: number;
}

/** A run the driver has submitted and is following to its close. */
interface Following {
  stepsPerRun: number;
  t0: number;
  /** When the last step was verified (driver clock). */
  last: number;
  resolve: () => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}

/** Where completed steps go while an interval is being measured. */
interface Collector {
  steps: number;
  latencies: number[];
}

export interface GovernedOptions {
  /** Extra environment for every agent (NODE_OPTIONS for profiles, ...). */
  env?: Record<string, string>;
  logDir?: string;
  /**
   * Replicas of each agent identity (docs/scaling.md, section 2).
   * @default 1
   */
  replicas?: number;
  /**
   * A 3-node cluster with the trace and buckets at R3 (docs/scaling.md, section 1) instead
   * of one server.
   * @default false
   */
  cluster?: boolean;
}

/**
 * The real Trias stack (every agent its own process, real keys, policy and trace) on a
 * nats-server this bench starts (file storage). Steps are runs of the `noop` program with
 * one step, submitted as the console, complete when the verifier's run_closed is stored.
 */
export class Governed {
  readonly stack: Stack;
  /** The nats-server processes: one, or the cluster's three. */
  readonly serverPids: number[];
  readonly client: ConsoleClient;
  readonly dir: string;
  readonly pids: Map<string, number>;
  readonly #sink: Subscription;
  readonly #runs: Map<string, Following>;
  readonly #collect: { current: Collector | null };
  #counter = 0;
  readonly #prefix = `b${Date.now().toString(36)}`;

  private constructor(
    stack: Stack,
    serverPids: number[],
    client: ConsoleClient,
    dir: string,
    sink: Subscription,
    runs: Map<string, Following>,
    collect: { current: Collector | null },
  ) {
    this.stack = stack;
    this.serverPids = serverPids;
    this.client = client;
    this.dir = dir;
    this.#sink = sink;
    this.#runs = runs;
    this.#collect = collect;
    this.pids = new Map(
      (stack.opts.agents ?? []).map(
        (a) => [processName(a), stack.pid(processName(a)) ?? -1] as const,
      ),
    );
  }

  static async start(o: GovernedOptions = {}): Promise<Governed> {
    const dir = mkdtempSync(join(tmpdir(), "trias-bench-"));
    let serverPids: () => number[] = () => [];
    const logDir = o.logDir ?? join(dir, "logs");
    const stack = await Stack.start({
      keyDir: join(dir, "keys"),
      logDir,
      environment: "dev",
      agents: Array.from({ length: o.replicas ?? 1 }, (_, r) =>
        defaultAgents(2).map((a) => ({ ...a, replica: r + 1 })),
      ).flat(),
      env: { LOG_LEVEL: "warn", ...(o.env ?? {}) },
      ...(o.cluster ? { replicas: 3 } : {}),
      natsFactory: async (users) => {
        if (o.cluster) {
          const cluster = await startTestCluster({ users, logDir });
          serverPids = () => cluster.nodes.flatMap((n) => (n.pid !== undefined ? [n.pid] : []));
          return {
            url: cluster.urls,
            restart: () => Promise.resolve(),
            stop: () => cluster.stop(),
          };
        }
        const server = await LocalNatsServer.start({
          users,
          logFile: join(logDir, "nats-server.log"),
        });
        serverPids = () => (server.pid !== undefined ? [server.pid] : []);
        return server;
      },
    });
    if (serverPids().length === 0) throw new Error("the stack did not start a nats-server");
    const keyDir = join(dir, "keys");
    const client = new ConsoleClient(
      stack.admin,
      Signer.load(join(keyDir, keyFileName("console"))),
      KeyRegistry.load(stack.registryFile),
    );
    const runs = new Map<string, Following>();
    const collect: { current: Collector | null } = { current: null };
    // The driver follows the verifier's messages only: each verified step and each close. It
    // decodes them without checking the verifier's signature (whoever audits does that), so
    // following costs the stack little.
    const sink = await stack.admin.watch("trias.verifier.>", (m) => {
      const run = runOfSubject(m.subject);
      const f = runs.get(run);
      if (!f) return;
      const now = performance.now();
      try {
        const env = decode(decodeFrame(m.data).payload) as Message;
        if (env.kind === "step_verified") {
          if (env.body.compensationOf !== null || env.body.verdict !== "passed") return;
          // Steps after the first: from the previous verification to this one, i.e. once
          // around proposer -> router -> (reviewers) -> executor -> verifier.
          if (f.stepsPerRun > 1 && collect.current) {
            collect.current.steps++;
            if (env.body.index > 0) collect.current.latencies.push(now - f.last);
          }
          f.last = now;
        } else if (env.kind === "run_closed") {
          runs.delete(run);
          clearTimeout(f.timer);
          if (env.body.outcome !== "completed") {
            f.reject(new Error(`run ${run} closed ${env.body.outcome}: ${env.body.reason}`));
            return;
          }
          // A run of one step: from the submission to the receipt.
          if (f.stepsPerRun === 1 && collect.current) {
            collect.current.steps++;
            collect.current.latencies.push(now - f.t0);
          }
          f.resolve();
        }
      } catch (e) {
        runs.delete(run);
        clearTimeout(f.timer);
        f.reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
    return new Governed(stack, serverPids(), client, dir, sink, runs, collect);
  }

  /** One governed run of `steps` no-op steps of a tier; resolves when it is closed. */
  run(tier: Tier, steps: number, timeoutMs = 30_000): Promise<void> {
    const run = `${this.#prefix}-${tier[0]}${(this.#counter++).toString(36)}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#runs.delete(run);
        reject(
          new Error(`run ${run} (${steps} ${tier} steps) did not close within ${timeoutMs} ms`),
        );
      }, timeoutMs);
      const t0 = performance.now();
      this.#runs.set(run, { stepsPerRun: steps, t0, last: t0, resolve, reject, timer });
      this.client
        .submit(
          { goal: "bench", program: "noop", input: { tier, steps }, requestedBy: "bench" },
          run,
        )
        .catch((e: unknown) => {
          clearTimeout(timer);
          this.#runs.delete(run);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
  }

  async lastSeq(): Promise<number> {
    return this.stack.admin.lastSeq();
  }

  /**
   * Keep `inFlight` runs going (each starts the next when it closes) and count the steps
   * completed in the next `ms` milliseconds, or until `maxSteps`; then let the runs under
   * way finish, uncounted, so the next interval starts from a quiet pipeline.
   */
  async drive(
    tier: Tier,
    inFlight: number,
    stepsPerRun: number,
    o: { ms?: number; maxSteps?: number; cpu?: CpuMeter },
  ): Promise<{
    steps: number;
    latencies: number[];
    wallMs: number;
    failures: string[];
    cpuMs: Map<string, number>;
  }> {
    const c: Collector = { steps: 0, latencies: [] };
    const failures: string[] = [];
    const ms = o.ms ?? Number.POSITIVE_INFINITY;
    const maxSteps = o.maxSteps ?? Number.POSITIVE_INFINITY;
    let done = false;
    let cpuMs = new Map<string, number>();
    let wallMs = 0;
    let finish: () => void = () => undefined;
    const finished = new Promise<void>((r) => (finish = r));
    const t0 = performance.now();
    this.#collect.current = c;
    o.cpu?.begin();
    const stop = () => {
      if (done) return;
      done = true;
      wallMs = performance.now() - t0;
      if (o.cpu) cpuMs = o.cpu.end();
      this.#collect.current = null;
      finish();
    };
    const timer = Number.isFinite(ms) ? setTimeout(stop, ms) : null;
    const poll = setInterval(() => {
      if (c.steps >= maxSteps) stop();
    }, 5);
    const lane = async (): Promise<void> => {
      while (!done) {
        try {
          await this.run(tier, stepsPerRun);
        } catch (e) {
          failures.push(e instanceof Error ? e.message : String(e));
          stop();
          return;
        }
      }
    };
    const lanes = Array.from({ length: inFlight }, lane);
    await finished;
    if (timer) clearTimeout(timer);
    clearInterval(poll);
    await Promise.all(lanes);
    return { steps: c.steps, latencies: c.latencies, wallMs, failures, cpuMs };
  }

  async segment(
    tier: Tier,
    inFlight: number,
    ms: number,
    stepsPerRun: number,
    phases = true,
    extraPids: ReadonlyMap<string, number> = new Map(),
  ): Promise<Segment> {
    const fromSeq = (await this.lastSeq()) + 1;
    const cpu = new CpuMeter(new Map([...this.pids, ...extraPids]));
    const r = await this.drive(tier, inFlight, stepsPerRun, { ms, cpu });
    const t = performance.now();
    const ph = phases ? await this.phasesSince(fromSeq) : {};
    return {
      steps: r.steps,
      wallMs: r.wallMs,
      latencies: r.latencies,
      failures: r.failures,
      cpuMs: Object.fromEntries(r.cpuMs),
      phases: ph,
      readMs: performance.now() - t,
    };
  }

  /**
   * Phase durations of every step stored since `fromSeq`, from the server's store
   * timestamps (see PHASES). One read of the trace for the whole interval; the driver
   * decodes envelopes without checking signatures, only to learn each message's step.
   */
  async phasesSince(fromSeq: number): Promise<Record<string, number[]>> {
    // run -> step -> kind -> latest store time (the last of several verdicts is what the
    // next phase waits for); step -1 holds the run's own events.
    const runs = new Map<string, Map<number, Map<string, number>>>();
    for (const m of await this.stack.admin.readAll("trias.>", fromSeq)) {
      const parts = parseSubject(m.subject);
      if (!parts || !parts.run.startsWith(this.#prefix)) continue;
      const { kind, run } = parts;
      let step = -1;
      if (kind !== "task_submitted" && kind !== "run_closed") {
        const env = decode(decodeFrame(m.data).payload) as { step: number | null };
        step = env.step ?? -1;
      }
      let steps = runs.get(run);
      if (!steps) runs.set(run, (steps = new Map<number, Map<string, number>>()));
      let ts = steps.get(step);
      if (!ts) steps.set(step, (ts = new Map<string, number>()));
      const t = (m.timestampUs ?? m.timestampMs * 1000) / 1000;
      ts.set(kind, Math.max(ts.get(kind) ?? 0, t));
    }
    const out: Record<string, number[]> = {};
    for (const p of PHASES) out[p] = [];
    for (const steps of runs.values()) {
      const own = steps.get(-1);
      const submitted = own?.get("task_submitted");
      const closed = own?.get("run_closed");
      const total = [...steps.keys()].filter((k) => k >= 0).length;
      for (const [k, ts] of steps) {
        if (k < 0) continue;
        const start = k === 0 ? submitted : steps.get(k - 1)?.get("step_verified");
        const proposed = ts.get("step_proposed");
        const assigned = ts.get("tier_assigned");
        const verdict = ts.get("verdict");
        const executed = ts.get("step_executed");
        const verified = ts.get("step_verified");
        if (
          start === undefined ||
          proposed === undefined ||
          assigned === undefined ||
          executed === undefined ||
          verified === undefined
        )
          continue;
        // In runs of several steps the first step also carries the run's start: left out,
        // as it is from the step latencies.
        if (total > 1 && k === 0) continue;
        out["propose"]?.push(proposed - start);
        out["route"]?.push(assigned - proposed);
        if (verdict !== undefined) out["review"]?.push(verdict - assigned);
        out["execute"]?.push(executed - (verdict ?? assigned));
        out["verify"]?.push(verified - executed);
        if (total === 1 && closed !== undefined) out["close"]?.push(closed - verified);
      }
    }
    return out;
  }

  #stopped = false;

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const f of this.#runs.values()) clearTimeout(f.timer);
    await this.#sink.stop();
    await this.stack.stop();
  }
}
