import {
  AuthorizationError,
  PermissionViolationError,
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
  JetStreamApiCodes,
  JetStreamApiError,
  RetentionPolicy,
  StorageType,
  jetstream,
  jetstreamManager,
  type ConsumerConfig,
  type ConsumerInfo,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type MsgRequest,
  type NextMsgRequest,
  type ConsumerMessages,
  type StreamConfig,
  type StreamInfo,
} from "@nats-io/jetstream";
import { Kvm, type KV } from "@nats-io/kv";
import {
  STREAM_NAME,
  SUBJECT_ROOT,
  TransientError,
  runFilter,
  runOfSubject,
  subjectFor,
} from "@trias/protocol";
import { backoffMs, classifyFailure, failureAction } from "./failure.js";
import { runReadGap } from "./run-read.js";
import { inboxPrefixOf } from "./nats-config.js";

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
  /** Subjects the stream stores. @default [`trias.>`] (the trace) */
  subjects?: string[];
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
  /** @default DEFAULT_ACK_WAIT_MS */
  ackWaitMs?: number;
  /** @default DEFAULT_MAX_DELIVER */
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

/**
 * Default ack wait: how long a delivery may go without an ack or an in-progress signal before
 * the server hands it out again. It is the takeover time after a crash: a delivery held by an
 * agent that died comes back this long after its last sign of life (docs/soak.md). A living
 * agent keeps every delivery it holds alive with in-progress signals (`working()`, every
 * third of the ack wait), so the wait bounds nothing else. At 30 s a run whose verifier was
 * killed waited 30 s although the restarted verifier was ready after 1.4 s.
 * @default 3_000
 */
export const DEFAULT_ACK_WAIT_MS = 3_000;

/**
 * How long in-progress signals keep one delivery alive at most. A handler that has not
 * finished by then is taken as wedged rather than working, and the delivery is left to
 * come back after the ack wait (where the same process, or its successor, handles it again;
 * every handler absorbs a redelivery).
 * @default 300_000 (5 minutes: far above any handler's own timeouts)
 */
export const MAX_WORKING_MS = 300_000;

/**
 * How long one pull request waits for messages, and so how soon a consumer notices it must
 * pull again. It is also the client's retry interval after a reconnect: @nats-io/jetstream
 * checks the consumer then and, when the restarted server is not serving JetStream yet,
 * waits one `expires` before checking again. At the client's default (30 s) a nats-server
 * restart stalled consumers for 30-60 s (pnpm soak); at 5 s an idle consumer costs one small
 * request per 5 s.
 * @default 5_000
 */
export const PULL_EXPIRES_MS = 5_000;

/**
 * Default deliveries of one message before the server gives up on it: none, so that a
 * transient failure is never final (a message the server gave up on would leave its run
 * open without a word). What is wrong with a message is refused by the agent instead, and a
 * failure it cannot classify after UNKNOWN_FAILURE_ATTEMPTS (see failure.ts).
 * @default -1 (unlimited)
 */
export const DEFAULT_MAX_DELIVER = -1;

/**
 * How long consuming waits before resuming a pull that ended by itself (see ConsumerLost).
 * @default 1_000 ms
 */
const CONSUME_RESUME_MS = 1_000;

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
  /** Told when the durable disappeared under the consumer, and whether it was recreated. */
  onConsumerLost?: (e: ConsumerLost) => void;
  /**
   * The consumer's ack wait: each delivery held here (queued or being handled) gets an
   * in-progress signal every third of it, so only a dead or frozen process lets one lapse.
   * @default DEFAULT_ACK_WAIT_MS
   */
  ackWaitMs?: number;
}

/**
 * A durable that vanished while consumed (deleted by an operator, or lost with the server's
 * store). The bus recreates it from the oldest message this process had not settled, so
 * nothing it was owed is skipped; what it had settled may come again, which every handler
 * absorbs as it absorbs a redelivery.
 */
export interface ConsumerLost {
  durable: string;
  /**
   * How the client learnt it: the server's 409 on a waiting pull, a failed lookup, or the
   * pull ending by itself (`consume_ended`: the durable is kept if it still exists).
   */
  reason: "consumer_deleted" | "consumer_not_found" | "consume_ended";
  /** Where the recreated durable starts; absent when recreating failed (`error` says why). */
  fromSeq?: number;
  error?: unknown;
}

export type { ConsumerInfo, StreamInfo };

/** One run's stored messages, read from where the run starts (see Bus.readRun). */
export interface RunRead {
  /** The run's messages on the filter, in stream order. */
  messages: StoredMessage[];
  /** Where the read started: the run's first task_submitted, or 1 when it fell back. */
  fromSeq: number;
  /** Why the run was read from the stream's beginning instead (null: it was read from its start). */
  fallback: string | null;
  /** The stream's last sequence when the run was counted: a follower goes on after it. */
  lastSeq: number;
}

/**
 * Subjects of one run read one by one (each literal, which nats-server 2.9 serves from its
 * per-subject index); a run with more (junk on many kinds) is read with its one wildcard
 * filter from its start. A run of the shipped protocol uses about ten.
 * @default 32
 */
export const MAX_LITERAL_READS = 32;

/**
 * A subject of a run with at most this many messages is read by message gets (each the next
 * message on the subject, answered by the stream's leader), one after another; one with more
 * by a consumer. Gets make no consumer: on a cluster with a node down, an ephemeral consumer
 * may be placed on that node and its create time out (about one in two measured here), and
 * a run read by ten consumers would almost never get through. A step adds one message to
 * each of its subjects, so runs of up to this many steps are read by gets alone.
 * @default 64
 */
export const MAX_GETS_PER_SUBJECT = 64;

/** What `ensureConsumer` found and did. */
export type EnsureResult = "created" | "updated" | "unchanged" | "replaced";

export interface Subscription {
  stop(): Promise<void>;
  /** Resolves when the consume loop has ended. */
  readonly closed: Promise<void>;
  /**
   * The oldest message of the durable this process has not settled (acked or terminated),
   * or the one after the newest delivered: where a successor resumes what it left.
   * Absent on subscriptions that keep no position (ordered reads).
   */
  resumeAt?(): number;
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
  readonly #nc: NatsConnection;
  readonly #js: JetStreamClient;
  readonly #jsm: JetStreamManager;
  readonly stream: string;
  readonly #subs = new Set<Subscription>();
  /** Each durable's options as last ensured here: what a lost durable is recreated with. */
  readonly #durables = new Map<string, ConsumerOptions>();
  #streamSubjects: Promise<string[] | null> | null = null;
  readonly #acks: JsMsg[] = [];
  #ackTimer: NodeJS.Timeout | undefined;
  readonly #ackLingerMs: number;
  /** Stored messages fetched by reads (see stats). */
  #read = 0;

  private constructor(
    nc: NatsConnection,
    js: JetStreamClient,
    jsm: JetStreamManager,
    stream: string,
    ackLingerMs: number,
  ) {
    this.#nc = nc;
    this.#js = js;
    this.#jsm = jsm;
    this.stream = stream;
    this.#ackLingerMs = ackLingerMs;
  }

  static async connect(o: BusOptions): Promise<Bus> {
    const deadline = Date.now() + (o.connectTimeoutMs ?? 15_000);
    let lastErr: unknown;
    while (Date.now() < deadline) {
      try {
        const nc = await connect({
          // NATS_URL may list a cluster's nodes, comma separated, as the nats CLI takes them.
          servers:
            typeof o.servers === "string" ? o.servers.split(",").map((s) => s.trim()) : o.servers,
          name: o.name,
          ...(o.user !== undefined ? { user: o.user } : {}),
          ...(o.pass !== undefined ? { pass: o.pass } : {}),
          // A user may subscribe to its own inbox prefix only (see nats-config.ts).
          ...(o.user !== undefined ? { inboxPrefix: inboxPrefixOf(o.user) } : {}),
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
      subjects: o.subjects ?? [`${SUBJECT_ROOT}.>`],
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
      await this.#jsm.streams.info(this.stream);
      await this.#jsm.streams.update(this.stream, cfg);
    } catch (e) {
      if (!isNotFound(e)) throw e;
      await this.#jsm.streams.add(cfg);
    }
  }

  /** Wait for the admin to create the stream (agents have no right to create it). */
  async waitForStream(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        await this.#jsm.streams.info(this.stream);
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

  /**
   * Store one message. With a message id the server stores it at most once, and a failed
   * publish is retried; without one (a benchmark's raw message) it is tried once.
   */
  async publish(
    subject: string,
    data: Uint8Array,
    o: { msgId?: string; headers?: Record<string, string>; retryForMs?: number },
  ): Promise<{ seq: number; duplicate: boolean }> {
    // The acks waiting go out in the same socket write as this publish.
    this.#flushAcks();
    const h = natsHeaders();
    for (const [k, v] of Object.entries(o.headers ?? {})) h.set(k, v);
    // Retrying is safe: the message id makes the server store the message at most once. It
    // carries a publish across a server restart or a leader change instead of losing it.
    const deadline = Date.now() + (o.msgId === undefined ? 0 : (o.retryForMs ?? 30_000));
    for (let attempt = 0; ; attempt++) {
      try {
        const ack = await this.#js.publish(subject, data, {
          ...(o.msgId !== undefined ? { msgID: o.msgId } : {}),
          headers: h,
          timeout: 5_000,
        });
        return { seq: ack.seq, duplicate: ack.duplicate };
      } catch (e) {
        const msg = (e as Error).message;
        if (isPermissionError(e) || Date.now() > deadline || this.#nc.isClosed()) {
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

  /**
   * The version of the nats-server this connection reached ("0.0.0" before it is known), for
   * feature checks such as `keyRevisionCheckHolds` (kv-swap.ts).
   */
  get serverVersion(): string {
    return this.#nc.info?.version ?? "0.0.0";
  }

  #termReason: boolean | undefined;
  /** Whether the server accepts `+TERM <reason>` (nats-server 2.10 and later). */
  #termTakesReason(): boolean {
    if (this.#termReason === undefined) {
      const [major = 0, minor = 0] = (this.#nc.info?.version ?? "0.0.0").split(".").map(Number);
      this.#termReason = major > 2 || (major === 2 && minor >= 10);
    }
    return this.#termReason;
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

  /**
   * Create a durable pull consumer, or update the mutable parts of an existing one. A
   * consumer that holds the name but is not a durable (an ephemeral given this name by
   * someone else, which nats-server 2.9 allows through the ephemeral create subject) is
   * deleted and replaced: only this identity may delete its own durables' names.
   */
  async ensureConsumer(durable: string, o: ConsumerOptions): Promise<EnsureResult> {
    this.#durables.set(durable, o);
    const cfg = durableConfig(durable, o);
    const info = await this.consumerInfo(durable);
    if (info && info.config.durable_name !== durable) {
      await this.#jsm.consumers.delete(this.stream, durable);
      await this.#createDurable(durable, o);
      return "replaced";
    }
    if (!info) {
      await this.#createDurable(durable, o);
      return "created";
    }
    if (
      info.config.filter_subject === o.filter &&
      info.config.ack_wait === cfg.ack_wait &&
      info.config.max_deliver === cfg.max_deliver &&
      info.config.max_ack_pending === cfg.max_ack_pending
    )
      return "unchanged";
    await this.#jsm.consumers.update(this.stream, durable, {
      filter_subject: o.filter,
      ack_wait: cfg.ack_wait,
      max_deliver: cfg.max_deliver,
      max_ack_pending: cfg.max_ack_pending,
    });
    return "updated";
  }

  async #createDurable(durable: string, o: ConsumerOptions, fromSeq?: number): Promise<void> {
    await this.#jsm.consumers.add(this.stream, {
      ...durableConfig(durable, o),
      ...(fromSeq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: fromSeq }
        : { deliver_policy: o.deliver === "new" ? DeliverPolicy.New : DeliverPolicy.All }),
    });
  }

  /** A consumer's state on the server, or null when there is none by that name. */
  async consumerInfo(name: string): Promise<ConsumerInfo | null> {
    try {
      return await this.#jsm.consumers.info(this.stream, name);
    } catch (e) {
      if (isNotFound(e)) return null;
      throw e;
    }
  }

  /** Delete a consumer (an operator's act: agents may delete only their own durables). */
  async deleteConsumer(name: string): Promise<boolean> {
    return this.#jsm.consumers.delete(this.stream, name);
  }

  /** A stream's configuration and state, this bus's by default. */
  async streamInfo(name = this.stream): Promise<StreamInfo> {
    return this.#jsm.streams.info(name);
  }

  /** The last sequence stored in the stream (0 when empty). */
  async lastSeq(): Promise<number> {
    return (await this.streamInfo()).state.last_seq;
  }

  /**
   * Remove stored messages from this bus's stream, those on `filter` only when given (admin
   * only: what an attacker with the admin's credentials could do, and the audit must notice).
   */
  async purge(o: { filter?: string } = {}): Promise<number> {
    const r = await this.#jsm.streams.purge(
      this.stream,
      o.filter !== undefined ? { filter: o.filter } : undefined,
    );
    return r.purged;
  }

  /** Delete a stream, this bus's by default (admin only: the trace is never deleted by agents). */
  /**
   * Let single messages of a stream be deleted (a KV bucket's stream refuses it by default);
   * the key store of crypto-shredding needs it, docs/privacy.md. Admin only.
   */
  async allowMessageDeletes(name: string): Promise<void> {
    const info = await this.#jsm.streams.info(name);
    if (info.config.deny_delete)
      await this.#jsm.streams.update(name, { ...info.config, deny_delete: false });
  }

  /** Delete one message and overwrite its bytes on the server (a secure delete). Admin only. */
  async eraseMessage(stream: string, seq: number): Promise<void> {
    await this.#jsm.streams.deleteMessage(stream, seq, true);
  }

  /**
   * Remove one message of a stream without a trace of it (no KV delete marker): how the pending
   * index drops a run's key, so that its bucket holds only runs still waiting. Needs the
   * stream's deletes allowed and `STREAM.MSG.DELETE` on it (nats-config.ts). False when the
   * message is gone already.
   */
  async removeMessage(stream: string, seq: number): Promise<boolean> {
    try {
      return await this.#jsm.streams.deleteMessage(stream, seq, false);
    } catch (e) {
      if (isNotFound(e)) return false;
      throw e;
    }
  }

  async deleteStream(name = this.stream): Promise<boolean> {
    return this.#jsm.streams.delete(name);
  }

  /**
   * Pull from a durable consumer and hand each message to `handler`, which says what to do
   * with it. Messages with the same key (by default the subject's last token, the run) are
   * handled one at a time in stream order; different keys run concurrently. A durable
   * ensured through this bus that disappears is recreated (see ConsumerLost) and consuming
   * goes on; `onConsumerLost` is told either way.
   */
  async consume(
    durable: string,
    handler: (d: Delivery) => Promise<Disposition>,
    o: ConsumeOptions = {},
  ): Promise<Subscription> {
    const consumer = await this.#js.consumers.get(this.stream, durable);
    const start = await consumer.info(true);
    const position = new ResumePoint(start);
    let messages: ConsumerMessages = await consumer.consume({
      max_messages: o.batch ?? 64,
      expires: PULL_EXPIRES_MS,
    });
    let stopping = false;
    let lost: ConsumerLost["reason"] | null = null;
    const keyOf = o.keyOf ?? ((d: Delivery) => runOfSubject(d.subject));
    const tails = new Map<string, Promise<void>>();
    const inflight = new Set<Promise<void>>();
    // Every delivery this process holds, queued behind its key or being handled, with the
    // time it arrived. The server redelivers one only when its ack wait passes without a
    // sign of life, so a crash costs the ack wait, not the work; a live process says
    // "working" for each delivery it holds (see DEFAULT_ACK_WAIT_MS).
    const held = new Map<JsMsg, number>();
    const ackWaitMs = o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    const heartbeat = setInterval(
      () => {
        const now = Date.now();
        for (const [m, at] of held) {
          if (now - at > MAX_WORKING_MS) held.delete(m);
          else m.working();
        }
      },
      Math.max(100, Math.floor(ackWaitMs / 3)),
    );
    heartbeat.unref();
    const handleOne = async (m: JsMsg, d: Delivery): Promise<void> => {
      let disp: Disposition;
      try {
        disp = await handler(d);
      } catch (e) {
        o.onError?.(e, d);
        const action = failureAction(classifyFailure(e), d.deliveryCount);
        disp =
          action.type === "retry"
            ? { type: "nak", delayMs: action.delayMs }
            : { type: "term", reason: (e as Error)?.message ?? String(e) };
      }
      held.delete(m);
      switch (disp.type) {
        case "ack":
          position.settled(d.seq);
          this.#ack(m);
          break;
        case "nak":
          m.nak(disp.delayMs);
          break;
        case "term":
          position.settled(d.seq);
          // nats-server before 2.10 takes only a bare +TERM: one with a reason is ignored,
          // and the message comes back at every ack wait until max_deliver.
          if (this.#termTakesReason()) m.term(disp.reason.slice(0, 200));
          else m.term();
          break;
        default: {
          const never: never = disp;
          throw new Error(`unknown disposition ${String(never)}`);
        }
      }
    };

    // The client reports a deleted durable as a status (a 409 on the waiting pull, or a
    // lookup that fails after missed heartbeats) and keeps pulling from nothing: stop this
    // iteration so that the loop below recreates the durable.
    const watchStatus = (msgs: ConsumerMessages): void => {
      void (async () => {
        for await (const st of msgs.status()) {
          if (st.type === "consumer_deleted" || st.type === "consumer_not_found") {
            lost ??= st.type;
            msgs.stop();
            return;
          }
        }
      })();
    };
    watchStatus(messages);

    const loop = (async () => {
      for (;;) {
        try {
          for await (const m of messages) {
            const d = toDelivery(m);
            held.set(m, Date.now());
            position.delivered(d.seq);
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
        } catch {
          // Reported below as the pull having ended: consuming resumes, never stops silently.
        }
        // An iteration that ended while this process neither stopped nor lost its connection
        // (the client gave up on the pull) is resumed as a lost durable is: never a silent stop.
        const reason = lost ?? (stopping || this.#nc.isClosed() ? null : "consume_ended");
        lost = null;
        const opts = this.#durables.get(durable);
        if (stopping || reason === null || opts === undefined || this.#nc.isClosed()) break;
        // A pull that keeps ending at once (a permission lost, say) is not retried in a spin.
        if (reason === "consume_ended") await new Promise((r) => setTimeout(r, CONSUME_RESUME_MS));
        try {
          messages = await this.#recreate(durable, opts, position, reason, o, () => stopping);
        } catch {
          break; // stopped or closed while recreating; onConsumerLost has the error
        }
        if (stopping) {
          // Not close(): it waits for an iteration that will not happen.
          messages.stop();
          break;
        }
        watchStatus(messages);
      }
      await Promise.allSettled([...inflight]);
      clearInterval(heartbeat);
      this.#flushAcks();
    })();

    const sub: Subscription = {
      closed: loop,
      resumeAt: () => position.resumeAt(),
      stop: async () => {
        stopping = true;
        // The loop ends the iteration; a durable being recreated is stopped there.
        messages.stop();
        await loop;
        this.#subs.delete(sub);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  /** Recreate a lost durable where this process left it, retrying until it exists or we stop. */
  async #recreate(
    durable: string,
    opts: ConsumerOptions,
    position: ResumePoint,
    reason: ConsumerLost["reason"],
    o: ConsumeOptions,
    stopping: () => boolean,
  ): Promise<ConsumerMessages> {
    for (let attempt = 1; ; attempt++) {
      const fromSeq = position.resumeAt();
      try {
        // Another instance of this agent may have recreated it meanwhile: keep that durable.
        // A consumer that only took the name (see ensureConsumer) is replaced.
        let info = await this.consumerInfo(durable);
        if (info && info.config.durable_name !== durable) {
          await this.#jsm.consumers.delete(this.stream, durable);
          info = null;
        }
        if (!info) await this.#createDurable(durable, opts, fromSeq);
        const c = await this.#js.consumers.get(this.stream, durable);
        const messages = await c.consume({ max_messages: o.batch ?? 64, expires: PULL_EXPIRES_MS });
        o.onConsumerLost?.({ durable, reason, fromSeq });
        return messages;
      } catch (e) {
        o.onConsumerLost?.({ durable, reason, error: e });
        if (stopping() || this.#nc.isClosed()) throw e;
        await new Promise((r) => setTimeout(r, backoffMs(attempt)));
      }
    }
  }

  /**
   * The filter to give an ephemeral consumer: none when `filter` covers the whole stream.
   * nats-server 2.9 serves a filtered consumer by matching subjects block by block, at a
   * cost that grows with the stream (docs/performance.md, micro-measurements).
   */
  async #consumerFilter(filter: string): Promise<{ filter_subject?: string }> {
    if (filter === ">") return {};
    this.#streamSubjects ??= this.#jsm.streams
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
    const ci = await this.#jsm.consumers.add(this.stream, {
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
      const c = this.#js.consumers.getConsumerFromInfo(ci);
      while (pending > 0) {
        const batch = await c.fetch({ max_messages: Math.min(pending, 512), expires: 5_000 });
        let got = 0;
        for await (const m of batch) {
          got++;
          this.#read++;
          out.push(toStored(m));
          pending = m.info.pending;
        }
        if (got === 0) break;
      }
    } finally {
      // Not awaited: the read is complete, and the consumer expires on its own if this fails.
      void this.#jsm.consumers.delete(this.stream, ci.name).catch(() => undefined);
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
    const ci = await this.#jsm.consumers.add(this.stream, {
      ...(await this.#consumerFilter(filter)),
      ack_policy: AckPolicy.None,
      ...(o.fromSeq !== undefined
        ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: Math.max(1, o.fromSeq) }
        : { deliver_policy: DeliverPolicy.New }),
      inactive_threshold: nanos(60_000),
      mem_storage: true,
      num_replicas: 1,
    });
    const c = this.#js.consumers.getConsumerFromInfo(ci);
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
        await this.#jsm.consumers.delete(this.stream, ci.name).catch(() => undefined);
        this.#subs.delete(sub);
      },
    };
    this.#subs.add(sub);
    return sub;
  }

  /**
   * Where `run` starts in the trace: the sequence of its first task_submitted, or null. One
   * request that the server answers from its per-subject index (next message on a literal
   * subject), whatever the stream's length (docs/scaling.md, "Cold paths").
   */
  async runStart(run: string): Promise<number | null> {
    // The stream leader answers (not any replica, as a direct get would), so a run just
    // submitted is found on a cluster too.
    return (await this.#nextOn(subjectFor("console", "task_submitted", run), 1))?.seq ?? null;
  }

  /** The message stored at `seq`, or null when there is none (deleted, purged, not yet written). */
  async messageAt(seq: number): Promise<StoredMessage | null> {
    return this.#get({ seq });
  }

  /**
   * Every stored message of `run` on `filter` (default: all of the run's), in stream order,
   * without a scan of the stream from its beginning, which nats-server 2.9 makes for a
   * wildcard filter however few messages match. The start is a hint taken from the stream
   * (runStart), and the read checks it: the stream's count of the run's messages per subject
   * (one request) must all be read from there (runReadGap); otherwise, or without a start,
   * the run is read from seq 1 and `fallback` says why.
   */
  async readRun(run: string, o: { filter?: string } = {}): Promise<RunRead> {
    const filter = o.filter ?? runFilter(run);
    const [start, count] = await Promise.all([this.runStart(run), this.#subjectCounts(filter)]);
    let messages: StoredMessage[] = [];
    if (start !== null) {
      const subjects = Object.keys(count.counts);
      messages =
        subjects.length > MAX_LITERAL_READS
          ? await this.readAll(filter, start)
          : (
              await Promise.all(
                subjects.map((s) => this.#readSubject(s, start, count.counts[s] ?? 0)),
              )
            )
              .flat()
              .sort((a, b) => a.seq - b.seq);
    }
    const fallback = runReadGap(run, start, count, messages);
    if (fallback === null)
      return { messages, fromSeq: start ?? 1, fallback, lastSeq: count.lastSeq };
    return { messages: await this.readAll(filter), fromSeq: 1, fallback, lastSeq: count.lastSeq };
  }

  /**
   * The first `count` messages on the literal `subject` from `start`: by gets when they are few
   * (see MAX_GETS_PER_SUBJECT), else by a consumer (which also reads any stored since).
   */
  async #readSubject(subject: string, start: number, count: number): Promise<StoredMessage[]> {
    if (count > MAX_GETS_PER_SUBJECT) return this.readAll(subject, start);
    const out: StoredMessage[] = [];
    let seq = start;
    while (out.length < count) {
      const m = await this.#nextOn(subject, seq);
      if (m === null) break;
      this.#read++;
      out.push(m);
      seq = m.seq + 1;
    }
    return out;
  }

  /** The first message on the literal `subject` at or after `seq`, or null. */
  async #nextOn(subject: string, seq: number): Promise<StoredMessage | null> {
    // nats-server takes `next_by_subj` on STREAM.MSG.GET since 2.9.0 (the stream leader
    // answers); nats.js types only the direct get's request with it.
    const query: NextMsgRequest = { seq, next_by_subj: subject };
    return this.#get(query as unknown as MsgRequest);
  }

  /** One stored message by a STREAM.MSG.GET request (the stream leader answers), or null. */
  async #get(query: MsgRequest): Promise<StoredMessage | null> {
    try {
      const m = await this.#jsm.streams.getMessage(this.stream, query);
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

  /** The stream's count of messages per subject matching `filter`, and its last sequence. */
  async #subjectCounts(
    filter: string,
  ): Promise<{ counts: Record<string, number>; lastSeq: number }> {
    const si = await this.#jsm.streams.info(this.stream, { subjects_filter: filter });
    return { counts: si.state.subjects ?? {}, lastSeq: si.state.last_seq };
  }

  /**
   * What this connection has received: every message (`inMsgs`, API replies included) and the
   * stored messages its reads fetched (`read`, by readAll and readRun): what a read cost.
   */
  stats(): { inMsgs: number; inBytes: number; read: number } {
    const s = this.#nc.stats();
    return { inMsgs: s.inMsgs, inBytes: s.inBytes, read: this.#read };
  }

  /** The newest message stored on exactly `subject`, or null. */
  async lastBySubject(subject: string): Promise<StoredMessage | null> {
    return this.#get({ last_by_subj: subject });
  }

  async kv(
    bucket: string,
    o: { create?: boolean; history?: number; ttlMs?: number; replicas?: number } = {},
  ): Promise<KV> {
    const kvm = new Kvm(this.#js);
    return o.create
      ? kvm.create(bucket, {
          history: o.history ?? 1,
          ...(o.ttlMs ? { ttl: o.ttlMs } : {}),
          ...(o.replicas ? { replicas: o.replicas } : {}),
        })
      : kvm.open(bucket);
  }

  /**
   * Tells `listener` whether the connection is up: false on a disconnect and when it closes,
   * true on a reconnect (a container's healthcheck follows this; see docs/containers.md).
   */
  onConnectivity(listener: (up: boolean) => void): void {
    void (async () => {
      for await (const s of this.#nc.status()) {
        if (s.type === "disconnect") listener(false);
        else if (s.type === "reconnect") listener(true);
      }
    })();
    void this.#nc.closed().then(() => listener(false));
  }

  /** Stop consuming, let in-flight handlers finish, flush and close. */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.#subs].map((s) => s.stop()));
    this.#flushAcks();
    if (!this.#nc.isClosed()) await this.#nc.drain().catch(() => this.#nc.close());
  }
}

/** The parts of a durable's configuration this bus sets (see ConsumerOptions for defaults). */
function durableConfig(
  durable: string,
  o: ConsumerOptions,
): Partial<ConsumerConfig> & {
  durable_name: string;
  ack_wait: number;
  max_deliver: number;
  max_ack_pending: number;
} {
  return {
    durable_name: durable,
    ack_policy: AckPolicy.Explicit,
    filter_subject: o.filter,
    ack_wait: nanos(o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS),
    max_deliver: o.maxDeliver ?? DEFAULT_MAX_DELIVER,
    max_ack_pending: o.maxAckPending ?? DEFAULT_MAX_ACK_PENDING,
  };
}

/**
 * Where a recreated durable must start so that nothing owed to this process is skipped: the
 * oldest message delivered here and not yet settled (acked or terminated; a nak'd message
 * waiting out its delay is not settled), and failing that the message after the newest seen.
 * Until every message that was pending when consuming began has been settled here, no later
 * than the ack floor the server reported then.
 */
export class ResumePoint {
  readonly #unsettled = new Set<number>();
  #newest: number;
  readonly #startFloor: number;
  readonly #startDelivered: number;
  #startPending: number;

  constructor(start: {
    ack_floor: { stream_seq: number };
    delivered: { stream_seq: number };
    num_ack_pending: number;
  }) {
    this.#startFloor = start.ack_floor.stream_seq;
    this.#startDelivered = start.delivered.stream_seq;
    this.#newest = start.delivered.stream_seq;
    this.#startPending = start.num_ack_pending;
  }

  delivered(seq: number): void {
    this.#unsettled.add(seq);
    if (seq > this.#newest) this.#newest = seq;
  }

  settled(seq: number): void {
    if (!this.#unsettled.delete(seq)) return;
    if (seq <= this.#startDelivered && this.#startPending > 0) this.#startPending--;
  }

  resumeAt(): number {
    let at = this.#startPending > 0 ? this.#startFloor + 1 : this.#newest + 1;
    for (const seq of this.#unsettled) if (seq < at) at = seq;
    return Math.max(1, at);
  }
}

/** The errors in `e`'s cause chain, outermost first (the client wraps a server refusal). */
function causes(e: unknown): unknown[] {
  const out: unknown[] = [];
  for (let c = e; c !== undefined && c !== null && out.length < 8; c = (c as Error).cause)
    out.push(c);
  return out;
}

/** The server refused an operation for lack of permission (publish or subscribe). */
export function isPermissionError(e: unknown): boolean {
  return causes(e).some((c) => c instanceof PermissionViolationError);
}

/**
 * A KV create or update refused because the key is not at the revision given (for a create:
 * it exists already). The one compare-and-set failure callers act on; anything else is an error.
 */
export function isRevisionConflict(e: unknown): boolean {
  return causes(e).some(
    (c) =>
      c instanceof JetStreamApiError &&
      (c.code === JetStreamApiCodes.StreamWrongLastSequence ||
        c.code === JetStreamApiCodes.StreamWrongLastSequenceUnknown),
  );
}

/** The stream, consumer or message asked for does not exist. */
export function isNotFound(e: unknown): boolean {
  return causes(e).some(
    (c) =>
      c instanceof JetStreamApiError &&
      (c.code === JetStreamApiCodes.StreamNotFound ||
        c.code === JetStreamApiCodes.ConsumerNotFound ||
        c.code === JetStreamApiCodes.NoMessageFound),
  );
}

function isAuthError(e: unknown): boolean {
  return causes(e).some((c) => c instanceof AuthorizationError);
}
