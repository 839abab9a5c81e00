import { spawn, type ChildProcess } from "node:child_process";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { AckPolicy, DeliverPolicy, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { Bus, type Subscription } from "@trias/bus";
import { Packr } from "msgpackr";
import { type Segment } from "./governed.js";
import { CpuMeter } from "./proc.js";
import { closedLoop, type Waiting } from "./stats.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export const HOPS = 4;
export const BASELINE_STREAM = "BENCH";
export const HOP_PHASES = ["hop1", "hop2", "hop3", "hop4"] as const;

/**
 * The baseline: four plain hop processes (baseline-hop.js) on a stream of their own, on the
 * same nats-server as the governed stack. The driver publishes `hop.0` and waits for the
 * message to come out at `hop.4`.
 */
export class Baseline {
  readonly bus: Bus;
  readonly #children: ChildProcess[];
  readonly pids: Map<string, number>;
  readonly #sink: Subscription;
  readonly #waiting = new Map<string, Waiting>();
  #counter = 0;

  private constructor(
    bus: Bus,
    children: ChildProcess[],
    sink: Subscription,
    waiting: Map<string, Waiting>,
  ) {
    this.bus = bus;
    this.#children = children;
    this.#sink = sink;
    this.#waiting = waiting;
    this.pids = new Map(children.map((c, i) => [`hop-${i}`, c.pid ?? -1]));
  }

  static async start(natsUrl: string, creds: { user?: string; pass?: string }): Promise<Baseline> {
    const bus = await Bus.connect({
      servers: natsUrl,
      name: "bench-baseline",
      stream: BASELINE_STREAM,
      ...creds,
    });
    await bus.jsm.streams.delete(BASELINE_STREAM).catch(() => undefined);
    await bus.jsm.streams.add({
      name: BASELINE_STREAM,
      subjects: ["hop.>"],
      retention: RetentionPolicy.Limits,
      storage: StorageType.File,
      num_replicas: 1,
    });
    for (let i = 0; i < HOPS; i++) {
      await bus.jsm.consumers.add(BASELINE_STREAM, {
        durable_name: `hop-${i}`,
        filter_subject: `hop.${i}`,
        ack_policy: AckPolicy.Explicit,
        deliver_policy: DeliverPolicy.All,
        ack_wait: 30_000_000_000,
        max_ack_pending: 1024,
      });
    }
    const waiting = new Map<string, Waiting>();
    const sink = await bus.watch(`hop.${HOPS}`, (m) => {
      const body = packr.unpack(m.data) as { id: string };
      const w = waiting.get(body.id);
      if (!w) return;
      waiting.delete(body.id);
      clearTimeout(w.timer);
      w.resolve(performance.now() - w.t0);
    });
    const main = join(import.meta.dirname, "baseline-hop.js");
    const children: ChildProcess[] = [];
    const ready: Promise<void>[] = [];
    for (let i = 0; i < HOPS; i++) {
      const child = spawn(process.execPath, [main], {
        env: {
          ...process.env,
          NATS_URL: natsUrl,
          HOP: String(i),
          BENCH_STREAM: BASELINE_STREAM,
          ...(creds.user !== undefined ? { NATS_USER: creds.user } : {}),
          ...(creds.pass !== undefined ? { NATS_PASSWORD: creds.pass } : {}),
        },
        stdio: ["ignore", "pipe", "inherit"],
      });
      children.push(child);
      ready.push(
        new Promise<void>((resolve, reject) => {
          const rl = createInterface({ input: child.stdout });
          rl.once("line", () => resolve());
          child.once("exit", (code) =>
            reject(new Error(`baseline hop ${i} exited with code ${code}`)),
          );
        }),
      );
    }
    await Promise.all(ready);
    return new Baseline(bus, children, sink, waiting);
  }

  /** One message through the four hops; resolves with its latency in milliseconds. */
  one(timeoutMs = 20_000): Promise<number> {
    const id = `m${this.#counter++}`;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(
          new Error(
            `baseline message ${id} did not come out of hop ${HOPS} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const t0 = performance.now();
      this.#waiting.set(id, { t0, resolve, reject, timer });
      this.bus.js
        .publish("hop.0", packr.pack({ id, hop: 0, t: Date.now() }))
        .catch((e: unknown) => {
          clearTimeout(timer);
          this.#waiting.delete(id);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
  }

  async lastSeq(): Promise<number> {
    return (await this.bus.jsm.streams.info(BASELINE_STREAM)).state.last_seq;
  }

  /** Run a closed loop and read each message's hop timestamps back from the stream. */
  async segment(
    inFlight: number,
    ms: number,
    phases = true,
    extraPids: ReadonlyMap<string, number> = new Map(),
  ): Promise<Segment> {
    const fromSeq = (await this.lastSeq()) + 1;
    const cpu = new CpuMeter(new Map([...this.pids, ...extraPids]));
    cpu.begin();
    const r = await closedLoop(inFlight, ms, () => this.one());
    const cpuMs = cpu.end();
    const phaseSamples: Record<string, number[]> = {};
    const t = performance.now();
    if (phases) {
      const byId = new Map<string, (number | undefined)[]>();
      for (const m of await this.bus.readAll("hop.>", fromSeq)) {
        const hop = Number(m.subject.slice(4));
        const { id } = packr.unpack(m.data) as { id: string };
        let ts = byId.get(id);
        if (!ts) byId.set(id, (ts = []));
        ts[hop] = (m.timestampUs ?? m.timestampMs * 1000) / 1000;
      }
      for (const p of HOP_PHASES) phaseSamples[p] = [];
      for (const ts of byId.values()) {
        for (let h = 1; h <= HOPS; h++) {
          const a = ts[h - 1];
          const b = ts[h];
          if (a !== undefined && b !== undefined) phaseSamples[`hop${h}`]?.push(b - a);
        }
      }
    }
    return {
      steps: r.latencies.length,
      wallMs: r.wallMs,
      latencies: r.latencies,
      failures: r.failures,
      cpuMs: Object.fromEntries(cpuMs),
      phases: phaseSamples,
      readMs: performance.now() - t,
    };
  }

  #stopped = false;

  async stop(): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    await Promise.all(
      this.#children.map(
        (c) =>
          new Promise<void>((resolve) => {
            if (c.exitCode !== null || c.signalCode !== null) return resolve();
            const t = setTimeout(() => c.kill("SIGKILL"), 5000);
            c.once("exit", () => {
              clearTimeout(t);
              resolve();
            });
            c.kill("SIGTERM");
          }),
      ),
    );
    for (const w of this.#waiting.values()) clearTimeout(w.timer);
    await this.#sink.stop();
    await this.bus.jsm.streams.delete(BASELINE_STREAM).catch(() => undefined);
    await this.bus.drain();
  }
}
