import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LocalNatsServer, type Subscription } from "@trias/bus";
import { ConsoleClient, Stack, defaultAgents } from "@trias/console";
import { decode, decodeFrame } from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { CpuMeter } from "./proc.js";
import { closedLoop, type Waiting } from "./stats.js";

export type Tier = "light" | "standard" | "full";
export const TIERS: readonly Tier[] = ["light", "standard", "full"];
export const PHASES = ["propose", "route", "review", "execute", "verify"] as const;

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

export interface GovernedOptions {
  /** Extra environment for every agent (NODE_OPTIONS for profiles, ...). */
  env?: Record<string, string>;
  logDir?: string;
}

/**
 * The real Trias stack (every agent its own process, real keys, policy and trace) on a
 * nats-server this bench starts (file storage). Steps are runs of the `noop` program with
 * one step, submitted as the console, complete when the verifier's run_closed is stored.
 */
export class Governed {
  readonly stack: Stack;
  readonly server: LocalNatsServer;
  readonly client: ConsoleClient;
  readonly dir: string;
  readonly pids: Map<string, number>;
  readonly #sink: Subscription;
  readonly #waiting: Map<string, Waiting>;
  #counter = 0;
  readonly #prefix = `b${Date.now().toString(36)}`;

  private constructor(
    stack: Stack,
    server: LocalNatsServer,
    client: ConsoleClient,
    dir: string,
    sink: Subscription,
    waiting: Map<string, Waiting>,
  ) {
    this.stack = stack;
    this.server = server;
    this.client = client;
    this.dir = dir;
    this.#sink = sink;
    this.#waiting = waiting;
    this.pids = new Map(
      (stack.opts.agents ?? []).map((a) => [a.name, stack.pid(a.name) ?? -1] as const),
    );
  }

  static async start(o: GovernedOptions = {}): Promise<Governed> {
    const dir = mkdtempSync(join(tmpdir(), "trias-bench-"));
    let server: LocalNatsServer | null = null;
    const logDir = o.logDir ?? join(dir, "logs");
    const stack = await Stack.start({
      keyDir: join(dir, "keys"),
      logDir,
      environment: "dev",
      agents: defaultAgents(2),
      env: { LOG_LEVEL: "warn", ...(o.env ?? {}) },
      natsFactory: async (users) => {
        server = await LocalNatsServer.start({ users, logFile: join(logDir, "nats-server.log") });
        return server;
      },
    });
    if (!server) throw new Error("the stack did not start a nats-server");
    const keyDir = join(dir, "keys");
    const client = new ConsoleClient(
      stack.admin,
      Signer.load(join(keyDir, keyFileName("console"))),
      KeyRegistry.load(stack.registryFile),
    );
    const waiting = new Map<string, Waiting>();
    // Only the closing message matters to the driver; it decodes the outcome and trusts the
    // verifier's signature was checked by whoever audits, so the driver costs the stack little.
    const sink = await stack.admin.watch("trias.verifier.run_closed.*", (m) => {
      const run = m.subject.slice(m.subject.lastIndexOf(".") + 1);
      const w = waiting.get(run);
      if (!w) return;
      waiting.delete(run);
      clearTimeout(w.timer);
      try {
        const env = decode(decodeFrame(m.data).payload) as {
          body: { outcome: string; reason: string };
        };
        if (env.body.outcome !== "completed")
          w.reject(new Error(`run ${run} closed ${env.body.outcome}: ${env.body.reason}`));
        else w.resolve(performance.now() - w.t0);
      } catch (e) {
        w.reject(e instanceof Error ? e : new Error(String(e)));
      }
    });
    return new Governed(stack, server, client, dir, sink, waiting);
  }

  /** One governed step (a one-step run); resolves with its latency in milliseconds. */
  one(tier: Tier, timeoutMs = 20_000): Promise<number> {
    const run = `${this.#prefix}-${tier[0]}${(this.#counter++).toString(36)}`;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(run);
        reject(new Error(`run ${run} (${tier}) did not close within ${timeoutMs} ms`));
      }, timeoutMs);
      const t0 = performance.now();
      this.#waiting.set(run, { t0, resolve, reject, timer });
      this.client
        .submit(
          { goal: "bench", program: "noop", input: { tier, steps: 1 }, requestedBy: "bench" },
          run,
        )
        .catch((e: unknown) => {
          clearTimeout(timer);
          this.#waiting.delete(run);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
  }

  async lastSeq(): Promise<number> {
    return (await this.stack.admin.jsm.streams.info(this.stack.admin.stream)).state.last_seq;
  }

  async segment(
    tier: Tier,
    inFlight: number,
    ms: number,
    phases = true,
    extraPids: ReadonlyMap<string, number> = new Map(),
  ): Promise<Segment> {
    const fromSeq = (await this.lastSeq()) + 1;
    const cpu = new CpuMeter(new Map([...this.pids, ...extraPids]));
    cpu.begin();
    const r = await closedLoop(inFlight, ms, () => this.one(tier));
    const cpuMs = cpu.end();
    const t = performance.now();
    const ph = phases ? await this.phasesSince(fromSeq) : {};
    return {
      steps: r.latencies.length,
      wallMs: r.wallMs,
      latencies: r.latencies,
      failures: r.failures,
      cpuMs: Object.fromEntries(cpuMs),
      phases: ph,
      readMs: performance.now() - t,
    };
  }

  /**
   * Phase durations of every run stored since `fromSeq`, from the server's store timestamps:
   * propose (task_submitted to step_proposed), route (to tier_assigned), review (to the last
   * verdict), execute (from the assignment or last verdict to step_executed), verify (to
   * run_closed). One read of the trace for the whole interval, grouped by run.
   */
  async phasesSince(fromSeq: number): Promise<Record<string, number[]>> {
    const runs = new Map<string, Map<string, number>>();
    for (const m of await this.stack.admin.readAll("trias.>", fromSeq)) {
      const parts = m.subject.split(".");
      const kind = parts[2];
      const run = parts[3];
      if (!kind || !run || !run.startsWith(this.#prefix)) continue;
      let ts = runs.get(run);
      if (!ts) runs.set(run, (ts = new Map<string, number>()));
      const t = (m.timestampUs ?? m.timestampMs * 1000) / 1000;
      // The last of several (verdicts) is what the next phase waits for.
      ts.set(kind, Math.max(ts.get(kind) ?? 0, t));
    }
    const out: Record<string, number[]> = {};
    for (const p of PHASES) out[p] = [];
    for (const ts of runs.values()) {
      const submitted = ts.get("task_submitted");
      const proposed = ts.get("step_proposed");
      const assigned = ts.get("tier_assigned");
      const verdict = ts.get("verdict");
      const executed = ts.get("step_executed");
      const closed = ts.get("run_closed");
      if (
        submitted === undefined ||
        proposed === undefined ||
        assigned === undefined ||
        executed === undefined ||
        closed === undefined
      )
        continue;
      out["propose"]?.push(proposed - submitted);
      out["route"]?.push(assigned - proposed);
      if (verdict !== undefined) out["review"]?.push(verdict - assigned);
      out["execute"]?.push(executed - (verdict ?? assigned));
      out["verify"]?.push(closed - executed);
    }
    return out;
  }

  #stopped = false;

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const w of this.#waiting.values()) clearTimeout(w.timer);
    await this.#sink.stop();
    await this.stack.stop();
  }
}
