import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import {
  replicaDurable,
  type KeySwap,
  backoffMs,
  classifyFailure,
  failureAction,
  type Bus,
  type Delivery,
  type Disposition,
  type Subscription,
} from "@trias/bus";
import {
  GateError,
  MAX_FRAME_BYTES,
  TriasError,
  ValidationError,
  PROTOCOL_VERSION,
  decode,
  decodeFrame,
  parseSubject,
  recordsRefusal,
  runOfSubject,
  subjectOf,
  toTriasError,
  type BodyOf,
  type Frame,
  type Kind,
  type Message,
  type MessageOf,
  type TraceContext,
} from "@trias/protocol";
import type { KeyRegistry, RegisteredKey, Signer } from "@trias/signing";
import {
  SpanKind,
  extractTrace,
  injectTrace,
  metrics,
  natsAttributes,
  recordRejection,
  triasAttributes,
  withSpan,
} from "@trias/telemetry";
import { DEFAULT_ACK_WAIT_MS, DEFAULT_CLOCK_SKEW_MS, DEFAULT_MESSAGE_TTL_MS } from "./env.js";
import { ReplayWindow } from "./replay.js";
import { busPayloads, type Payloads } from "./payloads.js";
import { PartitionKeeper } from "./leases.js";
import { DEFAULT_PARTITIONS, partitionOf } from "./partitions.js";

/**
 * The id of the message being handled, so that whatever a handler emits names its cause in
 * a `trias-cause` header: `trias trace` rebuilds each run's causal tree from the stream.
 */
const causeOf = new AsyncLocalStorage<string>();
export const CAUSE_HEADER = "trias-cause";

/** Envelope ids remembered for replay detection, at most (about 2 MB, allocated at start). */
const MAX_SEEN = 50_000;

/** The subset of pino the host uses, so tests can pass any logger. */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

/** A logger that drops everything: for the CLI, which prints its own lines. */
export const silentLogger: Logger = {
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
};

export interface Incoming<M extends Message = Message> {
  message: M;
  frame: Frame;
  key: RegisteredKey;
  delivery: Delivery;
}

/** What a handler may ask for besides the default ack: redelivery after a delay (a durable timer). */
export type HandlerResult = void | { retryInMs: number };

export interface EmitFields<K extends Kind> {
  run: string;
  step: number | null;
  attempt: number;
  body: BodyOf<K>;
  trace?: TraceContext | null;
  ttlMs?: number;
  /**
   * Stable name for a message that must be published at most once (retries reuse it); the
   * envelope id is this name keyed by the signer (Signer.stableId), so no one else can take it.
   */
  id?: string;
  /**
   * Done at the same time as the publish, with the signed bytes (recording an outcome, say):
   * one round trip instead of two. The emit resolves when both have.
   */
  alongside?: (bytes: Uint8Array) => Promise<unknown>;
  /**
   * Bytes the frame must leave free under the frame limit because another frame will embed
   * it (a proposal inside its tier assignment, docs/receipts.md, 3).
   * @default 0
   */
  headroom?: number;
}

export interface Emitted {
  id: string;
  seq: number;
  duplicate: boolean;
  bytes: Uint8Array;
}

export interface HostOptions {
  name: string;
  bus: Bus;
  signer: Signer;
  registry: KeyRegistry;
  log: Logger;
  now?: () => number;
  newId?: () => string;
  maxFrameBytes?: number;
  /** Tolerated clock difference between agents. @default DEFAULT_CLOCK_SKEW_MS */
  clockSkewMs?: number;
  /** Lifetime of a message this host signs. @default DEFAULT_MESSAGE_TTL_MS */
  defaultTtlMs?: number;
  /**
   * Ack wait of the consumers this host listens on: the takeover time after a crash.
   * @default DEFAULT_ACK_WAIT_MS (3 s; see there)
   */
  ackWaitMs?: number;
  /**
   * Rejection records this agent may publish in a burst; past it, refusals are counted and
   * published as one aggregate record per second, so a junk flood cannot make the agents
   * write (and store, and follow) a record per junk message.
   * @default DEFAULT_REJECTION_BURST
   */
  rejectionBurst?: number;
  /**
   * Rejection records per second, sustained, once the burst is spent.
   * @default DEFAULT_REJECTIONS_PER_SECOND
   */
  rejectionsPerSecond?: number;
}

/** Rejection records an agent may publish at once before the rate applies. */
export const DEFAULT_REJECTION_BURST = 200;
/** Rejection records per second an agent publishes, sustained, past the burst. */
export const DEFAULT_REJECTIONS_PER_SECOND = 50;

/** Refusals counted but not recorded one by one, published as one record when the rate allows. */
interface Suppressed {
  total: number;
  byCode: Map<string, number>;
  firstSeq: number;
  lastSeq: number;
  lastSubject: string;
}

/** One `listen`: what a replay of a claimed partition needs to hand its messages over. */
interface Registration {
  /** The durable's name for the first replica (each replica's is replicaDurable of it). */
  base: string;
  filter: string;
  handle: (d: Delivery) => Promise<Disposition>;
  sub: Subscription | null;
  maxDeliver: number | undefined;
}

export interface ListenOptions {
  deliver?: "all" | "new";
  ackWaitMs?: number;
  maxDeliver?: number;
  batch?: number;
  /** Also told of every delivery refused at admission (a trace follower must count those too). */
  onRefused?: (d: Delivery) => void;
  /**
   * Looked at before the signature check, on the unverified envelope (`undefined` when it
   * cannot be decoded): returning false acks the delivery with nothing else done. Only for
   * skipping what the agent would ignore anyway, so that ignoring costs no verification; a
   * forged message can then only cause what skipping a genuine one causes: nothing.
   */
  wanted?: (envelope: unknown) => boolean;
}

/**
 * The part every agent shares. Incoming: size, frame, signature by a registered active key
 * of a role allowed for the kind, subject consistent with the envelope, freshness, replay;
 * only then the agent's handler. A refusal is published as a signed `message_rejected`
 * with the reason, and the message is terminated; nothing else changes.
 */
export class AgentHost {
  readonly name: string;
  readonly bus: Bus;
  readonly signer: Signer;
  readonly registry: KeyRegistry;
  /** Step arguments carried by reference; the bucket is opened only when one is met. */
  readonly payloads: Payloads;
  readonly log: Logger;
  readonly now: () => number;
  readonly newId: () => string;
  readonly #maxFrameBytes: number;
  readonly #skewMs: number;
  readonly #ttlMs: number;
  readonly #ackWaitMs: number;
  readonly #seen = new ReplayWindow(MAX_SEEN);
  readonly #subs: Subscription[] = [];
  readonly #burst: number;
  readonly #perSecond: number;
  #tokens: number;
  #refilledAt = 0;
  #suppressed: Suppressed | null = null;
  #flushTimer: ReturnType<typeof setInterval> | null = null;
  #keeper: PartitionKeeper | null = null;
  readonly #regs: Registration[] = [];
  readonly #onMoved: ((moved: (run: string) => boolean) => void)[] = [];
  /** Replayed messages not settled yet (a local redelivery pending): a next owner must replay them. */
  readonly #replayed = new Set<number>();

  constructor(o: HostOptions) {
    this.name = o.name;
    this.bus = o.bus;
    this.signer = o.signer;
    this.registry = o.registry;
    this.payloads = busPayloads(o.bus);
    this.log = o.log;
    this.now = o.now ?? Date.now;
    this.newId = o.newId ?? randomUUID;
    this.#maxFrameBytes = o.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#skewMs = o.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
    this.#ttlMs = o.defaultTtlMs ?? DEFAULT_MESSAGE_TTL_MS;
    this.#ackWaitMs = o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
    this.#burst = o.rejectionBurst ?? DEFAULT_REJECTION_BURST;
    this.#perSecond = o.rejectionsPerSecond ?? DEFAULT_REJECTIONS_PER_SECOND;
    this.#tokens = this.#burst;
  }

  /** Take one token of the rejection-record budget (a token bucket on this host's clock). */
  #takeToken(): boolean {
    const now = this.now();
    if (this.#refilledAt === 0) this.#refilledAt = now;
    const earned = ((now - this.#refilledAt) / 1000) * this.#perSecond;
    if (earned >= 1) {
      this.#tokens = Math.min(this.#burst, this.#tokens + Math.floor(earned));
      this.#refilledAt = now;
    }
    if (this.#tokens < 1) return false;
    this.#tokens--;
    return true;
  }

  #suppress(d: Delivery, code: string): void {
    const s = (this.#suppressed ??= {
      total: 0,
      byCode: new Map(),
      firstSeq: d.seq,
      lastSeq: d.seq,
      lastSubject: d.subject,
    });
    s.total++;
    s.byCode.set(code, (s.byCode.get(code) ?? 0) + 1);
    s.lastSeq = d.seq;
    s.lastSubject = d.subject;
    this.#flushTimer ??= setInterval(() => void this.#flushSuppressed(), 1000);
    this.#flushTimer.unref?.();
  }

  /** Publish the aggregate of refusals not recorded one by one, when the budget allows. */
  async #flushSuppressed(): Promise<void> {
    const s = this.#suppressed;
    if (!s) {
      if (this.#flushTimer) clearInterval(this.#flushTimer);
      this.#flushTimer = null;
      return;
    }
    if (!this.#takeToken()) return;
    this.#suppressed = null;
    const codes = [...s.byCode].map(([c, n]) => `${c} x${n}`).join(", ");
    try {
      await this.emit("message_rejected", {
        id: `rej-${this.name}-agg-${s.firstSeq}-${s.lastSeq}`,
        run: "_unknown",
        step: null,
        attempt: 0,
        body: {
          code: "rate_limited",
          reason: `${s.total} further refusal(s) between sequences ${s.firstSeq} and ${s.lastSeq} not recorded one by one (over ${this.#perSecond}/s): ${codes}`,
          subject: s.lastSubject,
          seq: null,
          messageId: null,
          sender: null,
          by: this.name,
        },
      });
    } catch (pubErr) {
      this.log.error({ err: String(pubErr) }, "could not publish aggregate rejection record");
    }
  }

  /** Sign and publish one message. The envelope id is the JetStream dedupe id. */
  async emit<K extends Kind>(kind: K, f: EmitFields<K>): Promise<Emitted> {
    const subject = subjectOf(this.signer.role, kind, f.run, f.body);
    return withSpan(
      `send ${kind}`,
      () => ({
        kind: SpanKind.PRODUCER,
        attributes: {
          ...natsAttributes({
            operation: "send",
            subject,
            template: `trias.${this.signer.role}.${kind}.{run}`,
          }),
          ...triasAttributes({
            run: f.run,
            ...(f.step !== null ? { step: f.step } : {}),
            attempt: f.attempt,
            agent: this.name,
            role: this.signer.role,
            kind,
          }),
        },
      }),
      () => this.#emit(kind, subject, f),
    );
  }

  async #emit<K extends Kind>(kind: K, subject: string, f: EmitFields<K>): Promise<Emitted> {
    // The signed envelope carries the W3C context of the span that sent it; without an
    // exporter there is no span, and the context of the message being handled goes on.
    const headers = injectTrace({});
    const traceparent = headers["traceparent"];
    const trace: TraceContext | null = traceparent
      ? { traceparent, ...(headers["tracestate"] ? { tracestate: headers["tracestate"] } : {}) }
      : (f.trace ?? null);
    const issuedAt = this.now();
    const message = {
      v: PROTOCOL_VERSION,
      id: f.id === undefined ? this.newId() : this.signer.stableId(f.id),
      kind,
      run: f.run,
      step: f.step,
      attempt: f.attempt,
      sender: this.signer.kid,
      role: this.signer.role,
      issuedAt,
      expiresAt: issuedAt + (f.ttlMs ?? this.#ttlMs),
      trace,
      body: f.body,
    } as MessageOf<K>;
    const bytes = this.signer.seal(message);
    // Never send what every receiver would refuse: the message that asked for it is refused
    // instead, with this reason, so its run ends visibly (DESIGN.md, 12).
    const limit = this.#maxFrameBytes - (f.headroom ?? 0);
    if (bytes.length > limit) {
      throw new ValidationError(
        "frame_oversized",
        `the ${kind} for run ${f.run} would be ${bytes.length} bytes, over the limit of ${limit}${f.headroom ? ` (${this.#maxFrameBytes} less ${f.headroom} for the frame that embeds it)` : ""}: not sent; send smaller arguments`,
      );
    }
    if (trace && !traceparent) {
      headers["traceparent"] = trace.traceparent;
      if (trace.tracestate) headers["tracestate"] = trace.tracestate;
    }
    const cause = causeOf.getStore();
    if (cause !== undefined) headers[CAUSE_HEADER] = cause;
    const [{ seq, duplicate }] = await Promise.all([
      this.bus.publish(subject, bytes, { msgId: message.id, headers }),
      f.alongside?.(bytes),
    ]);
    return { id: message.id, seq, duplicate, bytes };
  }

  /** Open and check one delivery (everything but the agent's own rules). Throws GateError/ValidationError. */
  admit(d: Delivery): Incoming {
    const { message, frame, key } = this.registry.open(d.data, this.#maxFrameBytes);
    const parts = parseSubject(d.subject);
    if (
      !parts ||
      parts.role !== message.role ||
      parts.kind !== message.kind ||
      parts.run !== message.run
    ) {
      throw new GateError(
        "subject_mismatch",
        `subject ${d.subject} does not match the envelope (${message.role} ${message.kind} for run ${message.run})`,
      );
    }
    // Freshness is judged against the time the server stored the message, not the time we
    // read it: a message queued while an agent was down is still valid, a message put on the
    // bus after it expired is not, and a replay of the trace reaches the same verdict.
    const storedAt = d.timestampMs;
    if (message.expiresAt + this.#skewMs < storedAt) {
      throw new GateError(
        "message_expired",
        `message ${message.id} expired at ${new Date(message.expiresAt).toISOString()} but was published at ${new Date(storedAt).toISOString()}`,
      );
    }
    if (message.issuedAt - this.#skewMs > storedAt) {
      throw new GateError(
        "message_from_future",
        `message ${message.id} claims to be issued at ${new Date(message.issuedAt).toISOString()}, after it was published (${new Date(storedAt).toISOString()})`,
      );
    }
    const firstSeq = this.#seen.firstSeen(message.id);
    if (firstSeq !== undefined && firstSeq !== d.seq) {
      throw new GateError(
        "message_replayed",
        `message ${message.id} was already received at sequence ${firstSeq}; this copy (sequence ${d.seq}) is a replay`,
      );
    }
    if (firstSeq === undefined) {
      this.#seen.remember(message.id, d.seq, message.expiresAt, this.now() - this.#skewMs);
    }
    return { message, frame, key, delivery: d };
  }

  /**
   * Publish the signed rejection record for a delivery. Never throws; false when the record
   * could not be published (the bus is down), so the caller retries rather than drop the
   * message without a visible reason. `o.limited`: the message did not pass admission (junk,
   * forged, unsigned): over the rate it is only counted for the aggregate record. A refusal
   * of an admitted message is always recorded on its own: it is signed by a registered key,
   * and its run may wait on that record to end (a quorum never met, a downgrade refused).
   */
  async recordRejection(
    d: Delivery,
    err: unknown,
    o: { limited?: boolean } = {},
  ): Promise<boolean> {
    const e = toTriasError(err);
    recordRejection({ code: e.code, reason: e.message });
    metrics.gateRejection(e.code);
    if (o.limited && (this.#suppressed !== null || !this.#takeToken())) {
      // Over the rate (or behind earlier ones still to be flushed, so order holds): counted.
      this.#suppress(d, e.code);
      return true;
    }
    const parts = parseSubject(d.subject);
    const run = parts && /^[A-Za-z0-9_-]{1,64}$/.test(parts.run) ? parts.run : "_unknown";
    let messageId: string | null = null;
    let sender: string | null = null;
    try {
      const probe = this.registry.open(d.data, this.#maxFrameBytes);
      messageId = probe.message.id;
      sender = probe.message.sender;
    } catch {
      // The message could not be opened; the rejection still names subject and sequence.
    }
    this.log.warn(
      { code: e.code, reason: e.message, subject: d.subject, seq: d.seq, run },
      "message rejected",
    );
    try {
      await this.emit("message_rejected", {
        id: `rej-${this.name}-${d.seq}`,
        run,
        step: null,
        attempt: 0,
        body: {
          code: e.code,
          reason: e.message,
          subject: d.subject,
          seq: d.seq,
          messageId,
          sender,
          by: this.name,
        },
      });
      return true;
    } catch (pubErr) {
      this.log.error(
        { err: String(pubErr), subject: d.subject },
        "could not publish rejection record; will retry",
      );
      return false;
    }
  }

  /**
   * Consume a durable and pass each admitted message to `handler`. What admission or the
   * handler throws is classified (classifyFailure): a refusal is recorded as a signed
   * rejection and the message terminated; a transient failure is retried with backoff and
   * never refused; an unknown one is retried, then refused as `internal`.
   */
  async listen(
    durable: string,
    filter: string,
    handler: (inc: Incoming) => Promise<HandlerResult>,
    o: ListenOptions = {},
  ): Promise<Subscription> {
    const ackWaitMs = o.ackWaitMs ?? this.#ackWaitMs;
    const keeper = this.#keeper;
    const base = durable;
    if (keeper) durable = replicaDurable(base, keeper.replica);
    // A replica after the first starts from now: what came before is in the partitions'
    // last owners' durables, and a claim replays it from there (docs/scaling.md, section 2).
    const deliver = o.deliver ?? (keeper && keeper.replica !== "1" ? "new" : undefined);
    const ensured = await this.bus.ensureConsumer(durable, {
      filter,
      ...(deliver ? { deliver } : {}),
      ackWaitMs,
      ...(o.maxDeliver ? { maxDeliver: o.maxDeliver } : {}),
    });
    if (ensured === "replaced")
      this.log.warn(
        { durable },
        "a consumer that was not this agent's durable held its name; deleted it and created the durable",
      );
    const handle = (d: Delivery): Promise<Disposition> => {
      const parts = parseSubject(d.subject);
      return withSpan(
        `process ${parts?.kind ?? "message"}`,
        () => ({
          parent: extractTrace(d.headers),
          kind: SpanKind.CONSUMER,
          attributes: {
            ...natsAttributes({
              operation: "process",
              subject: d.subject,
              consumerGroup: durable,
              bodySize: d.data.length,
            }),
            ...triasAttributes({
              agent: this.name,
              role: this.signer.role,
              ...(parts ? { run: parts.run } : {}),
            }),
          },
        }),
        async (span): Promise<Disposition> => {
          if (o.wanted && !o.wanted(peek(d.data))) {
            span.setAttribute("trias.skipped", true);
            return { type: "ack" };
          }
          let admitted = false;
          try {
            const inc = this.admit(d);
            admitted = true;
            const m = inc.message;
            if (span.isRecording()) {
              span.setAttributes(
                triasAttributes({
                  kind: m.kind,
                  ...(m.step !== null ? { step: m.step } : {}),
                  attempt: m.attempt,
                }),
              );
              span.setAttribute("messaging.message.id", m.id);
            }
            this.log.info(
              {
                run: m.run,
                step: m.step,
                attempt: m.attempt,
                kind: m.kind,
                seq: d.seq,
                from: inc.key.name,
              },
              "handling",
            );
            faultPoint(this.name, `before-${m.kind}`);
            const r = await causeOf.run(m.id, () => handler(inc));
            faultPoint(this.name, `after-${m.kind}`);
            if (r && "retryInMs" in r) return { type: "nak", delayMs: r.retryInMs };
            return { type: "ack" };
          } catch (e) {
            // Only what is wrong with the message is refused; a timeout, a lost connection
            // or a server away is retried with backoff, never signed as a rejection.
            const failure = classifyFailure(e);
            const action = failureAction(failure, d.deliveryCount);
            if (action.type === "retry") {
              this.log.warn(
                {
                  err: String((e as Error)?.message ?? e),
                  failure: failure.class,
                  code: failure.code,
                  subject: d.subject,
                  seq: d.seq,
                  delivery: d.deliveryCount,
                  retryInMs: action.delayMs,
                },
                "handling failed; will retry",
              );
              return { type: "nak", delayMs: action.delayMs };
            }
            const refused =
              failure.class === "unknown"
                ? new TriasError(
                    "internal",
                    `${this.name} could not handle the message in ${d.deliveryCount} attempts: ${String((e as Error)?.message ?? e)}`,
                    { cause: e },
                  )
                : e;
            if (admitted || recordsRefusal(this.signer.role, d.subject)) {
              if (!(await this.recordRejection(d, refused, { limited: !admitted })))
                return { type: "nak", delayMs: backoffMs(d.deliveryCount) };
            } else {
              // Another agent is addressed and records it: counted here, not recorded twice.
              const code = toTriasError(refused).code;
              metrics.gateRejection(code);
              this.log.debug({ code, subject: d.subject, seq: d.seq }, "message refused");
            }
            o.onRefused?.(d);
            return { type: "term", reason: toTriasError(refused).code };
          }
        },
      );
    };
    const reg: Registration = { base, filter, handle, sub: null, maxDeliver: o.maxDeliver };
    this.#regs.push(reg);
    const sub = await this.bus.consume(
      durable,
      async (d): Promise<Disposition> => {
        if (!keeper) return handle(d);
        const ticket = await keeper.enter(runOfSubject(d.subject));
        if (ticket.type === "skip") return { type: "ack" };
        if (ticket.type === "defer") return { type: "nak", delayMs: 0 };
        try {
          return await handle(d);
        } finally {
          ticket.done();
        }
      },
      {
        ...(o.batch ? { batch: o.batch } : {}),
        ackWaitMs,
        // A durable deleted under the agent (docs/security.md): recreated and reported, never
        // a silent stop.
        onConsumerLost: (e) => {
          if (e.fromSeq !== undefined)
            this.log.error(
              { durable, reason: e.reason, fromSeq: e.fromSeq },
              e.reason === "consume_ended"
                ? "consuming the durable ended by itself; resumed it"
                : "durable consumer disappeared; recreated it from the oldest message not yet settled",
            );
          else
            this.log.error(
              { durable, reason: e.reason, err: String((e.error as Error)?.message ?? e.error) },
              "durable consumer disappeared and could not be recreated yet; retrying",
            );
        },
        onError: (e, d) =>
          this.log.warn(
            {
              err: String((e as Error)?.message ?? e),
              subject: d.subject,
              seq: d.seq,
              delivery: d.deliveryCount,
            },
            "handler failed; will retry",
          ),
      },
    );
    reg.sub = sub;
    this.#subs.push(sub);
    return sub;
  }

  /**
   * Run as one replica of this identity among several: each message is handled only by the
   * replica that holds its run's partition (docs/scaling.md, section 2). Before `listen`.
   */
  async usePartitions(o: {
    kv: KeySwap;
    replica: string;
    partitions?: number;
    leaseMs?: number;
  }): Promise<PartitionKeeper> {
    if (this.#regs.length > 0)
      throw new TriasError("internal", "usePartitions must come before the first listen");
    const keeper = new PartitionKeeper({
      kv: o.kv,
      identity: this.name,
      replica: o.replica,
      partitions: o.partitions ?? DEFAULT_PARTITIONS,
      ...(o.leaseMs !== undefined ? { leaseMs: o.leaseMs } : {}),
      log: this.log,
      now: this.now,
      replay: (p, from, last) => this.#replayPartition(p, from, last),
      resumeAt: () => this.#resumeAt(),
      onLost: (ps) => {
        const lost = new Set(ps);
        for (const f of this.#onMoved)
          f((run) => lost.has(partitionOf(run, keeper.partitionCount)));
      },
    });
    this.#keeper = keeper;
    await keeper.start();
    return keeper;
  }

  /**
   * Told when partitions moved to another replica, with a test for the runs they hold: an
   * agent drops what it keeps in memory of those runs (another replica has moved them on).
   */
  onRunsMoved(f: (moved: (run: string) => boolean) => void): void {
    this.#onMoved.push(f);
  }

  /** Where the next owner of a partition given up now replays from (see PartitionKeeper). */
  #resumeAt(): number {
    let at = Number.MAX_SAFE_INTEGER;
    for (const r of this.#regs) at = Math.min(at, r.sub?.resumeAt?.() ?? at);
    for (const seq of this.#replayed) at = Math.min(at, seq);
    return at === Number.MAX_SAFE_INTEGER ? 1 : at;
  }

  /**
   * Hand a claimed partition's messages that its last owner may have left unhandled to the
   * handlers, as redeliveries: each consumer's messages of the partition from `from`, or
   * from the last owner's matching durable's ack floor.
   */
  async #replayPartition(
    partition: number,
    from: number | null,
    last: string | null,
  ): Promise<void> {
    const keeper = this.#keeper!;
    await Promise.all(
      this.#regs.map(async (reg) => {
        let start = from;
        if (start === null) {
          const owner = replicaDurable(reg.base, last ?? "1");
          const info = await this.bus.consumerInfo(owner);
          if (!info)
            this.log.warn(
              { partition, durable: owner },
              "the last owner's durable is gone; replaying the partition from the start of the trace",
            );
          start = (info?.ack_floor.stream_seq ?? 0) + 1;
        }
        const msgs = await this.bus.readAll(reg.filter, start);
        let n = 0;
        for (const m of msgs) {
          if (partitionOf(runOfSubject(m.subject), keeper.partitionCount) !== partition) continue;
          n++;
          await this.#replayOne(reg, { ...m, deliveryCount: 1 });
        }
        if (n > 0)
          this.log.info(
            { partition, durable: reg.base, from: start, messages: n },
            "replayed what the partition's last owner left",
          );
      }),
    );
  }

  /** One replayed message; a redelivery it asks for is a local timer while the partition stays here. */
  async #replayOne(reg: Registration, d: Delivery): Promise<void> {
    this.#replayed.add(d.seq);
    let settled = true;
    try {
      const disp = await reg.handle(d);
      if (disp.type !== "nak") return;
      if (reg.maxDeliver !== undefined && reg.maxDeliver > 0 && d.deliveryCount >= reg.maxDeliver)
        return;
      settled = false;
      setTimeout(() => {
        void (async () => {
          const ticket = await this.#keeper!.enter(runOfSubject(d.subject));
          if (ticket.type !== "handle") return this.#replayed.delete(d.seq);
          try {
            await this.#replayOne(reg, { ...d, deliveryCount: d.deliveryCount + 1 });
          } finally {
            ticket.done();
          }
        })();
      }, disp.delayMs).unref();
    } finally {
      if (settled) this.#replayed.delete(d.seq);
    }
  }

  async stop(): Promise<void> {
    if (this.#flushTimer) clearInterval(this.#flushTimer);
    this.#flushTimer = null;
    this.#keeper?.beginStop();
    await Promise.allSettled(this.#subs.map((s) => s.stop()));
    await this.#keeper?.stop();
  }
}

/** The envelope inside a frame, unverified; undefined when it is not a decodable frame. */
function peek(bytes: Uint8Array): unknown {
  try {
    return decode(decodeFrame(bytes).payload);
  } catch {
    return undefined;
  }
}

// Read once: reading the environment on every message is a measurable share of a hop.
const FAULTS = new Set((process.env["TRIAS_FAULT"] ?? "").split(",").filter(Boolean));

/**
 * Fault injection for crash tests and game days: with TRIAS_FAULT="<agent>:<point>[,...]"
 * the process kills itself (SIGKILL, no drain) when it reaches that point. Inert otherwise.
 */
export function faultPoint(agent: string, point: string): void {
  if (FAULTS.size > 0 && FAULTS.has(`${agent}:${point}`)) process.kill(process.pid, "SIGKILL");
}
