import { generateKeyPairSync } from "node:crypto";
import { createInterface } from "node:readline";
import { join } from "node:path";
import { Bus, type Subscription } from "@trias/bus";
import { ed25519, type SigningKey } from "@trias/signing";
import { Packr } from "msgpackr";
import { type Segment } from "./governed.js";
import { CpuMeter } from "./proc.js";
import { payloadOf, sealFrame } from "./signed-frame.js";
import { closedLoop, type Waiting } from "./stats.js";
import { Supervisor } from "@trias/supervise";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

export const HOPS = 4;
export const HOP_PHASES = ["hop1", "hop2", "hop3", "hop4"] as const;
/**
 * Signatures each signed hop checks: as many as the agent in its place checks for a light
 * step (proposer: the verification; router: the proposal; executor: the assignment and the
 * proposal inside it; verifier: proposal, assignment and execution off the trace, the frames
 * inside them being ones it has checked), so the signed 4-hop costs what the invariants'
 * cryptography costs the governed pipeline, and nothing else.
 */
const SIGNATURE_CHECKS = [1, 1, 2, 3] as const;

/** An Ed25519 key pair as the hops take it: seed and public key, hex. */
function keyPair(): { seed: string; pub: string } {
  const jwk = generateKeyPairSync("ed25519").privateKey.export({ format: "jwk" });
  return {
    seed: Buffer.from(String(jwk.d), "base64url").toString("hex"),
    pub: Buffer.from(String(jwk.x), "base64url").toString("hex"),
  };
}

/**
 * A reference pipeline: four plain hop processes (baseline-hop.js) on a stream of their own,
 * on the same nats-server as the governed stack. The driver publishes `<prefix>.0` and waits
 * for the message to come out at `<prefix>.4`. Plain, it is the baseline; signed, every hop
 * checks signatures on what it receives (SIGNATURE_CHECKS) and signs what it sends (the
 * driver signs the first message, outside the pipeline's CPU): the floor for a governed
 * light step, whose four messages are signed and whose agents check seven signatures.
 */
export class Baseline {
  readonly bus: Bus;
  readonly signed: boolean;
  readonly #stream: string;
  readonly #prefix: string;
  readonly #hops: Supervisor;
  readonly pids: Map<string, number>;
  readonly #sink: Subscription;
  readonly #waiting = new Map<string, Waiting>();
  readonly #driverKey: SigningKey | null;
  #counter = 0;

  private constructor(
    bus: Bus,
    shape: { stream: string; prefix: string; driverKey: SigningKey | null },
    hops: Supervisor,
    sink: Subscription,
    waiting: Map<string, Waiting>,
  ) {
    this.bus = bus;
    this.signed = shape.driverKey !== null;
    this.#stream = shape.stream;
    this.#prefix = shape.prefix;
    this.#driverKey = shape.driverKey;
    this.#hops = hops;
    this.#sink = sink;
    this.#waiting = waiting;
    this.pids = new Map(hops.names().map((n) => [n, hops.get(n)?.pid ?? -1]));
  }

  static async start(
    natsUrl: string,
    creds: { user?: string; pass?: string },
    o: { signed?: boolean } = {},
  ): Promise<Baseline> {
    const signed = o.signed === true;
    const stream = signed ? "BENCH_SIGNED" : "BENCH";
    const prefix = signed ? "shop" : "hop";
    const bus = await Bus.connect({
      servers: natsUrl,
      name: `bench-${prefix}`,
      stream,
      ...creds,
    });
    await bus.deleteStream().catch(() => undefined);
    await bus.ensureStream({ subjects: [`${prefix}.>`], storage: "file", replicas: 1 });
    for (let i = 0; i < HOPS; i++) {
      await bus.ensureConsumer(`${prefix}-${i}`, {
        filter: `${prefix}.${i}`,
        deliver: "all",
        ackWaitMs: 30_000,
        maxAckPending: 1024,
      });
    }
    const waiting = new Map<string, Waiting>();
    const sink = await bus.watch(`${prefix}.${HOPS}`, (m) => {
      const body = packr.unpack(signed ? payloadOf(m.data) : m.data) as { id: string };
      const w = waiting.get(body.id);
      if (!w) return;
      waiting.delete(body.id);
      clearTimeout(w.timer);
      w.resolve(performance.now() - w.t0);
    });
    // The compiled hop, whether this module runs from dist or (in its test) from src.
    const main = join(import.meta.dirname, "..", "dist", "baseline-hop.js");
    // keys[0] is the driver's; hop i checks keys[i] and signs with keys[i + 1].
    const keys = signed ? Array.from({ length: HOPS + 1 }, keyPair) : [];
    const hops = new Supervisor();
    const ready: Promise<void>[] = [];
    for (let i = 0; i < HOPS; i++) {
      const own = keys[i + 1];
      const prev = keys[i];
      const { child } = hops.spawn(`${prefix}-${i}`, process.execPath, [main], {
        env: {
          ...process.env,
          NATS_URL: natsUrl,
          HOP: String(i),
          BENCH_STREAM: stream,
          HOP_PREFIX: prefix,
          ...(own && prev
            ? {
                SIGN_SEED: own.seed,
                SIGN_PUBLIC: own.pub,
                PREV_PUBLIC: prev.pub,
                SIGNATURE_CHECKS: String(SIGNATURE_CHECKS[i] ?? 1),
              }
            : {}),
          ...(creds.user !== undefined ? { NATS_USER: creds.user } : {}),
          ...(creds.pass !== undefined ? { NATS_PASSWORD: creds.pass } : {}),
        },
        stdio: ["ignore", "pipe", "inherit"],
      });
      ready.push(
        new Promise<void>((resolve, reject) => {
          if (!child.stdout) return reject(new Error(`${prefix} ${i} has no stdout`));
          const rl = createInterface({ input: child.stdout });
          rl.once("line", () => resolve());
          child.once("exit", (code) =>
            reject(new Error(`${prefix} ${i} exited with code ${code}`)),
          );
        }),
      );
    }
    await Promise.all(ready);
    const driver = keys[0];
    const driverKey = driver
      ? ed25519.signingKey(Buffer.from(driver.seed, "hex"), Buffer.from(driver.pub, "hex"))
      : null;
    return new Baseline(bus, { stream, prefix, driverKey }, hops, sink, waiting);
  }

  /** One message through the four hops; resolves with its latency in milliseconds. */
  one(timeoutMs = 20_000): Promise<number> {
    const id = `m${this.#counter++}`;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#waiting.delete(id);
        reject(
          new Error(
            `${this.#prefix} message ${id} did not come out of hop ${HOPS} within ${timeoutMs} ms`,
          ),
        );
      }, timeoutMs);
      const t0 = performance.now();
      this.#waiting.set(id, { t0, resolve, reject, timer });
      this.bus
        .publish(`${this.#prefix}.0`, this.#sealed(packr.pack({ id, hop: 0, t: Date.now() })), {})
        .catch((e: unknown) => {
          clearTimeout(timer);
          this.#waiting.delete(id);
          reject(e instanceof Error ? e : new Error(String(e)));
        });
    });
  }

  #sealed(payload: Uint8Array): Uint8Array {
    return this.#driverKey ? sealFrame(this.#driverKey, payload) : payload;
  }

  async lastSeq(): Promise<number> {
    return this.bus.lastSeq();
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
      for (const m of await this.bus.readAll(`${this.#prefix}.>`, fromSeq)) {
        const hop = Number(m.subject.slice(this.#prefix.length + 1));
        const { id } = packr.unpack(this.signed ? payloadOf(m.data) : m.data) as {
          id: string;
        };
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
    await this.#hops.stopAll("SIGTERM");
    for (const w of this.#waiting.values()) clearTimeout(w.timer);
    await this.#sink.stop();
    await this.bus.deleteStream().catch(() => undefined);
    await this.bus.drain();
  }
}
