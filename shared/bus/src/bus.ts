import {
  connect,
  headers as natsHeaders,
  nanos,
  type NatsConnection,
  type MsgHdrs,
} from "@nats-io/transport-node";
import {
  AckPolicy,
  DeliverPolicy,
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type ConsumerMessages,
  type StreamConfig,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import { STREAM_NAME, SUBJECT_ROOT, TransientError, isTriasError } from "@trias/protocol";

export interface BusOptions {
  servers: string | string[];
  /** Connection name, shown in server monitoring: the agent's identity. */
  name: string;
  user?: string;
  pass?: string;
  stream?: string;
  /** Give up connecting after this long (the server may still be starting). */
  connectTimeoutMs?: number;
  /** How long a handled message's ack may wait for a publish to share a write with. */
  ackLingerMs?: number;
}

export interface StreamOptions {
  /** How long the trace is kept. 0 = forever. */
  maxAgeMs?: number;
  maxMsgSize?: number;
  /** Window in which the server drops a repeated Nats-Msg-Id; covers the longest message TTL. */
  duplicateWindowMs?: number;
  replicas?: number;
  storage?: "file" | "memory";
}

export interface Delivery {
  subject: string;
  data: Uint8Array;
  seq: number;
  /** 1 on first delivery. */
  deliveryCount: number;
  headers: Record<string, string>;
  /** When the server stored the message (ms since epoch). */
  timestampMs: number;
}

export type Disposition =
  { type: "ack" } | { type: "nak"; delayMs: number } | { type: "term"; reason: string };

export const ACK: Disposition = { type: "ack" };

export interface StoredMessage {
  subject: string;
  data: Uint8Array;
  seq: number;
  headers: Record<string, string>;
  timestampMs: number;
  /** The same store time in microseconds, where the read gives it (readAll, watch). */
  timestampUs?: number;
}

export interface ConsumerOptions {
  /** Subject filter (one: multiple filters need nats-server 2.10). */
  filter: string;
  ackWaitMs?: number;
  maxDeliver?: number;
  /** Where a new consumer starts. Existing durables keep their position. */
  deliver?: "all" | "new";
  /** Delivered but not yet acked (a nak'd message waiting out its delay counts too). */
  maxAckPending?: number;
}

/**
 * Default ceiling of un-acked messages per durable. It is not the handler concurrency (the
 * pull batch is): a message nak'd with a delay, such as the executor's review-window timer on
 * a tier assignment (60 s by default), stays pending until it comes back. At 1,024 the
 * consumer stopped delivering once about 17 reviewed steps/s had been seen for a minute, and
 * every tier waited for the timers (docs/performance.md, micro-measurements).
 */
export const DEFAULT_MAX_ACK_PENDING = 65_536;

/** How long a handled message's ack waits by default for a publish to share a write with. */
const ACK_LINGER_MS = 20;
/** Acks sent at once at most; more waiting go out without waiting for a publish. */
const ACK_LINGER_MAX = 256;

export interface ConsumeOptions {
  /** Messages pulled per request and so at most in flight. */
  batch?: number;
  /** Key that serialises handling (messages with the same key run one at a time, in order). */
  keyOf?: (d: Delivery) => string;
  /** Called when a handler throws; the message is then nak'd (retryable) or term'd. */
  onError?: (e: unknown, d: Delivery) => void;
}

export interface Subscription {
  stop(): Promise<void>;
  /** Resolves when the consume loop has ended. */
  readonly closed: Promise<void>;
}

function hdrsToRecord(h: MsgHdrs | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  if (!h) return out;
  for (const k of h.keys()) out[k] = h.get(k);
  return out;
}

function toStored(m: JsMsg): StoredMessage {
  return {
    subject: m.subject,
    data: m.data,
    seq: m.seq,
    headers: hdrsToRecord(m.headers),
    timestampMs: Math.floor(m.info.timestampNanos / 1_000_000),
    timestampUs: Math.floor(m.info.timestampNanos / 1_000),
  };
}

function toDelivery(m: JsMsg): Delivery {
  const info = m.info;
  let headers: Record<string, string> | undefined;
  return {
    subject: m.subject,
    data: m.data,
    seq: info.streamSequence,
    deliveryCount: info.deliveryCount,
    timestampMs: Math.floor(info.timestampNanos / 1_000_000),
    // Decoded when asked for: an agent only reads them to continue a trace that is recorded.
    get headers() {
      return (headers ??= hdrsToRecord(m.headers));
    },
  };
}

/**
 * One NATS connection with JetStream. Everything durable goes through the single trace
 * stream; consumers track progress and never delete history (limits retention).
 */
export class Bus {
  readonly nc: NatsConnection;
  readonly js: JetStreamClient;
  readonly jsm: JetStreamManager;
  readonly stream: string;
  readonly #subs = new Set<Subscription>();
  #streamSubjects: Promise<string[] | null> | null = null;
  readonly #acks: JsMsg[] = [];
  #ackTimer: NodeJS.Timeout | undefined;
  readonly #ackLingerMs: number;

  private constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    stream: string,
    ackLingerMs: number,
  ) {
    this.nc = nc;
    this.js = js;
    this.jsm = jsm;
    this.stream = stream;
    this.#ackLingerMs = ackLingerMs;
  }

  static async connect(o: BusOptions): Promise<Bus> {
    const deadline = Date.now() + (o.connectTimeoutMs ?? 15_000);
    let lastErr: unknown;
    while (Date.now() < deadline) {
      try {
        const nc = await connect({
          servers: o.servers,
          name: o.name,
          ...(o.user !== undefined ? { user: o.user } : {}),
          ...(o.pass !== undefined ? { pass: o.pass } : {}),
          // Async stack traces cost a lot per request on the hot path (measured: ~3x).
          noAsyncTraces: true,
          maxReconnectAttempts: -1,
          reconnectTimeWait: 250,
        });
        const jsm = await jetstreamManager(nc, { checkAPI: false });
        return new Bus(
          nc,
          jetstream(nc, { checkAPI: false }),
          jsm,
          o.stream ?? STREAM_NAME,
          o.ackLingerMs ?? ACK_LINGER_MS,
        );
      } catch (e) {
        lastErr = e;
        if (isAuthError(e)) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    }
    const servers = Array.isArray(o.servers) ? o.servers.join(",") : o.servers;
    throw new TransientError(
      "bus_unavailable",
      `cannot connect to NATS at ${servers}: ${String((lastErr as Error)?.message ?? lastErr)}`,
      {
        cause: lastErr,
      },
    );
  }

  /** Create the trace stream, or bring an existing one to this configuration. Admin only. */
  async ensureStream(o: StreamOptions = {}): Promise<void> {
    const cfg: Partial<StreamConfig> & { name: string } = {
      name: this.stream,
      subjects: [`${SUBJECT_ROOT}.>`],
      retention: RetentionPolicy.Limits,
      storage: o.storage === "memory" ? StorageType.Memory : StorageType.File,
      discard: DiscardPolicy.Old,
      max_age: nanos(o.maxAgeMs ?? 0),
      max_msg_size: o.maxMsgSize ?? 1024 * 1024,
      duplicate_window: nanos(o.duplicateWindowMs ?? 10 * 60_000),
      num_replicas: o.replicas ?? 1,
      allow_direct: true,
    };
    try {
      await this.jsm.streams.info(this.stream);
      await this.jsm.streams.update(this.stream, cfg);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.jsm.streams.add(cfg);
    }
  }

  /** Wait for the admin to create the stream (agents have no right to create it). */
  async waitForStream(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.jsm.streams.info(this.stream);
        return;
      } catch (e) {
        if (!isNotFound(e) || Date.now() > deadline) {
          throw new TransientError(
            "bus_unavailable",
            `stream ${this.stream} is not available: ${(e as Error).message}`,
            { cause: e },
          );
        }
        await new Promise((r) => setTimeout(r, 200));
      }
    }
  }

  async publish(
    subject: string,
    data: Uint8Array,
    o: { msgId: string; headers?: Record<string, string>; retryForMs?: number },
  ): Promise<{ seq: number; duplicate: boolean }> {
    // The acks waiting go out in the same socket write as this publish.
    this.#flushAcks();
    const h = natsHeaders();
    for (const [k, v] of Object.entries(o.headers ?? {})) h.set(k, v);
    // Retrying is safe: the message id makes the server store the message at most once. It
    // carries a publish across a server restart or a leader change instead of losing it.
    const deadline = Date.now() + (o.retryForMs ?? 30_000);
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.js.publish(subject, data, {
          msgID: o.msgId,
          headers: h,
          timeout: 5_000,
        });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (e) {
        const msg = (e as Error).message;
        if (/permissions violation/i.test(msg) || Date.now() > deadline || this.nc.isClosed()) {
          throw new TransientError("bus_unavailable", `publish to ${subject} failed: ${msg}`, {
            cause: e,
          });
        }
        await new Promise((r) => setTimeout(r, Math.min(1_000, 50 * 2 ** attempt)));
      }
    }
  }

  /**
   * Acks linger: they go out with this connection's next publish, in the same socket write,
   * or after the linger (ACK_LINGER_MS by default), whichever comes first. A write is a
   * system call that costs an agent about as much as a signature check
   * (docs/decisions/002-ack-linger.md), and no one waits for an ack: the next hop is driven
   * by the publish. An ack still only ever follows its handler; a crash inside the linger is a
   * redelivery, which every handler already absorbs (message ids, effect claims), as it
   * does a crash just before the ack.
   */
  #ack(m: JsMsg): void {
    this.#acks.push(m);
    if (this.#acks.length >= ACK_LINGER_MAX) this.#flushAcks();
    else this.#ackTimer ??= setTimeout(() => this.#flushAcks(), this.#ackLingerMs);
  }

  /** Send the acks waiting (see #ack). */
  #flushAcks(): void {
    if (this.#ackTimer !== undefined) {
      clearTimeout(this.#ackTimer);
      this.#ackTimer = undefined;
    }
    if (this.#acks.length === 0) return;
    for (const m of this.#acks.splice(0)) m.ack();
  }

  /** Create a durable pull consumer, or update the mutable parts of an existing one. */
  async ensureConsumer(durable: string, o: ConsumerOptions): Promise<void> {
    const cfg = {
      durable_name: durable,
      ack_policy: AckPolicy.Explicit,
      filter_subject: o.filter,
      ack_wait: nanos(o.ackWaitMs ?? 30_000),
      max_deliver: o.maxDeliver ?? 20,
      max_ack_pending: o.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
    };
    try {
      const info = await this.jsm.consumers.info(this.stream, durable);
      if (
        info.config.filter_subject !== o.filter ||
        info.config.ack_wait !== cfg.ack_wait ||
        info.config.max_deliver !== cfg.max_deliver ||
        info.config.max_ack_pending !== cfg.max_ack_pending
      ) {
        await this.jsm.consumers.update(this.stream, durable, {
          filter_subject: o.filter,
          ack_wait: cfg.ack_wait,
          max_deliver: cfg.max_deliver,
          max_ack_pending: cfg.max_ack_pending,
        });
      }
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.jsm.consumers.add(this.stream, {
        ...cfg,
        deliver_policy: o.deliver === "new" ? DeliverPolicy.New : DeliverPolicy.All,
      });
    }
  }

  /**
   * Pull from a durable consumer and hand each message to `handler`, which says what to do
   * with it. Messages with the same key (by default the subject's last token, the run) are
   * handled one at a time in stream order; different keys run concurrently.
   */
  async consume(
    durable: string,
    handler: (d: Delivery) => Promise<Disposition>,
    o: ConsumeOptions = {},
  ): Promise<Subscription> {
    const consumer = await this.js.consumers.get(this.stream, durable);
    const messages: ConsumerMessages = await consumer.consume({ max_messages: o.batch ?? 64 });
    const keyOf = o.keyOf ?? ((d: Delivery) => d.subject.slice(d.subject.lastIndexOf(".") + 1));
    const tails = new Map<string, Promise<void>>();
    const inflight = new Set<Promise<void>>();
    const handleOne = async (m: JsMsg, d: Delivery): Promise<void> => {
      let disp: Disposition;
      try {
        disp = await handler(d);
      } catch (e) {
        o.onError?.(e, d);
        disp =
          isTriasError(e) && !e.retryable
            ? { type: "term", reason: e.message }
            : { type: "nak", delayMs: backoffMs(d.deliveryCount) };
      }
      switch (disp.type) {
        case "ack":
          this.#ack(m);
          break;
        case "nak":
          m.nak(disp.delayMs);
          break;
        case "term":
          m.term(disp.reason.slice(0, 200));
          break;
        default: {
          const never: never = disp;
          throw new Error(`unknown disposition ${String(never)}`);
        }
      }
    };

    const loop = (async () => {
      for await (const m of messages) {
        const d = toDelivery(m);
        const key = keyOf(d);
        const prev = tails.get(key) ?? Promise.resolve();
        const next = prev.then(() => handleOne(m, d));
        tails.set(key, next);
        inflight.add(next);
        void next.finally(() => {
          inflight.delete(next);
          if (tails.get(key) === next) tails.delete(key);
        });
      }
      await Promise.allSettled([...inflight]);
      this.#flushAcks();
    })();

    const sub: Subscription = {
      closed: loop,
      stop: async () => {
        await messages.close();
        await loop;
        this.#subs.delete(sub);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  /**
   * The filter to give an ephemeral consumer: none when `filter` covers the whole stream.
   * nats-server 2.9 serves a filtered consumer by matching subjects block by block, at a
   * cost that grows with the stream (docs/performance.md, micro-measurements).
   */
  async #consumerFilter(filter: string): Promise<{ filter_subject?: string }> {
    if (filter === ">") return {};
    this.#streamSubjects ??= this.jsm.streams
      .info(this.stream)
      .then((si) => si.config.subjects ?? [])
      .catch(() => {
        this.#streamSubjects = null;
        return null;
      });
    const subjects = await this.#streamSubjects;
    return subjects?.length === 1 && subjects[0] === filter ? {} : { filter_subject: filter };
  }

  /** Every stored message matching `filter` from `fromSeq`, in stream order, read once. */
  async readAll(filter: string, fromSeq = 1): Promise<StoredMessage[]> {
    const ci = await this.jsm.consumers.add(this.stream, {
      ...(await this.#consumerFilter(filter)),
      ack_policy: AckPolicy.None,
      ...(fromSeq > 1
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq }
        : { deliver_policy: DeliverPolicy.All }),
      inactive_threshold: nanos(30_000),
      mem_storage: true,
      num_replicas: 1,
    });
    const out: StoredMessage[] = [];
    try {
      let pending = ci.num_pending;
      // The consumer from its create response: no second round trip to look it up.
      const c = this.js.consumers.getConsumerFromInfo(ci);
      while (pending > 0) {
        const batch = await c.fetch({ max_messages: Math.min(pending, 512), expires: 5_000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          out.push(toStored(m));
          pending = m.info.pending;
        }
        if (got === 0) break;
      }
    } finally {
      // Not awaited: the read is complete, and the consumer expires on its own if this fails.
      void this.jsm.consumers.delete(this.stream, ci.name).catch(() => undefined);
    }
    return out;
  }

  /**
   * Follow messages matching `filter` as they are stored (from `fromSeq`, or only new ones),
   * without acks or a durable: for watchers such as the console, which keep no progress.
   */
  async watch(
    filter: string,
    handler: (m: StoredMessage) => void,
    o: { fromSeq?: number } = {},
  ): Promise<Subscription> {
    const ci = await this.jsm.consumers.add(this.stream, {
      ...(await this.#consumerFilter(filter)),
      ack_policy: AckPolicy.None,
      ...(o.fromSeq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, o.fromSeq) }
        : { deliver_policy: DeliverPolicy.New }),
      inactive_threshold: nanos(60_000),
      mem_storage: true,
      num_replicas: 1,
    });
    const c = this.js.consumers.getConsumerFromInfo(ci);
    const messages = await c.consume({ max_messages: 256 });
    const loop = (async () => {
      for await (const m of messages) {
        handler(toStored(m));
      }
    })();
    const sub: Subscription = {
      closed: loop,
      stop: async () => {
        await messages.close();
        await loop;
        await this.jsm.consumers.delete(this.stream, ci.name).catch(() => undefined);
        this.#subs.delete(sub);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  /** The newest message stored on exactly `subject`, or null. */
  async lastBySubject(subject: string): Promise<StoredMessage | null> {
    try {
      const m = await this.jsm.streams.getMessage(this.stream, { last_by_subj: subject });
      if (!m) return null;
      return {
        subject: m.subject,
        data: m.data,
        seq: m.seq,
        headers: hdrsToRecord(m.header),
        timestampMs: m.time.getTime(),
      };
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  async kv(
    bucket: string,
    o: { create?: boolean; history?: number; ttlMs?: number } = {},
  ): Promise<KV> {
    const kvm = new Kvm(this.js);
    return o.create
      ? kvm.create(bucket, { history: o.history ?? 1, ...(o.ttlMs ? { ttl: o.ttlMs } : {}) })
      : kvm.open(bucket);
  }

  /** Stop consuming, let in-flight handlers finish, flush and close. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#subs].map((s) => s.stop()));
    this.#flushAcks();
    if (!this.nc.isClosed()) await this.nc.drain().catch(() => this.nc.close());
  }
}

export function backoffMs(deliveryCount: number): number {
  return Math.min(30_000, 250 * 2 ** Math.max(0, deliveryCount - 1));
}

/**
 * A KV create or update refused because the key is not at the revision given (for a create:
 * it exists already). The one compare-and-set failure callers act on; anything else is an error.
 */
export function isRevisionConflict(e: unknown): boolean {
  return String((e as Error)?.message ?? "").includes("wrong last sequence");
}

function isNotFound(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? "").toLowerCase();
  const code = (e as { code?: unknown; api_error?: { err_code?: number; code?: number } })
    ?.api_error;
  return (
    msg.includes("not found") ||
    code?.code === 404 ||
    code?.err_code === 10059 ||
    code?.err_code === 10014
  );
}

function isAuthError(e: unknown): boolean {
  const msg = String((e as Error)?.message ?? "").toLowerCase();
  return msg.includes("authorization") || msg.includes("authentication");
}
