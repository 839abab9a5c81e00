import { AsyncLocalStorage } from "node:async_hooks";
import { randomUUID } from "node:crypto";
import {
  isTransientBusError,
  type Bus,
  type Delivery,
  type Disposition,
  type Subscription,
} from "@trias/bus";
import {
  GateError,
  MAX_FRAME_BYTES,
  PROTOCOL_VERSION,
  decode,
  decodeFrame,
  isTriasError,
  parseSubject,
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
  /** Default ack wait for consumers this host creates. @default DEFAULT_ACK_WAIT_MS */
  ackWaitMs?: number;
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
  readonly log: Logger;
  readonly now: () => number;
  readonly newId: () => string;
  readonly #maxFrameBytes: number;
  readonly #skewMs: number;
  readonly #ttlMs: number;
  readonly #ackWaitMs: number;
  readonly #seen = new ReplayWindow(MAX_SEEN);
  readonly #subs: Subscription[] = [];

  constructor(o: HostOptions) {
    this.name = o.name;
    this.bus = o.bus;
    this.signer = o.signer;
    this.registry = o.registry;
    this.log = o.log;
    this.now = o.now ?? Date.now;
    this.newId = o.newId ?? randomUUID;
    this.#maxFrameBytes = o.maxFrameBytes ?? MAX_FRAME_BYTES;
    this.#skewMs = o.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS;
    this.#ttlMs = o.defaultTtlMs ?? DEFAULT_MESSAGE_TTL_MS;
    this.#ackWaitMs = o.ackWaitMs ?? DEFAULT_ACK_WAIT_MS;
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

  /** Publish the signed rejection record for a delivery. Never throws. */
  async recordRejection(d: Delivery, err: unknown): Promise<void> {
    const e = toTriasError(err);
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
    recordRejection({ code: e.code, reason: e.message });
    metrics.gateRejection(e.code);
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
    } catch (pubErr) {
      this.log.error(
        { err: String(pubErr), subject: d.subject },
        "could not publish rejection record",
      );
    }
  }

  /**
   * Consume a durable and pass each admitted message to `handler`. A non-retryable error
   * from admission or the handler is recorded as a rejection; a retryable one is retried
   * with backoff by the bus.
   */
  async listen(
    durable: string,
    filter: string,
    handler: (inc: Incoming) => Promise<HandlerResult>,
    o: ListenOptions = {},
  ): Promise<Subscription> {
    const ensured = await this.bus.ensureConsumer(durable, {
      filter,
      ...(o.deliver ? { deliver: o.deliver } : {}),
      ackWaitMs: o.ackWaitMs ?? this.#ackWaitMs,
      ...(o.maxDeliver ? { maxDeliver: o.maxDeliver } : {}),
    });
    if (ensured === "replaced")
      this.log.warn(
        { durable },
        "a consumer that was not this agent's durable held its name; deleted it and created the durable",
      );
    const sub = await this.bus.consume(
      durable,
      (d): Promise<Disposition> => {
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
            try {
              const inc = this.admit(d);
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
              // A bus that is briefly unreachable (a node lost, a leader being elected) is
              // retried like a retryable error: refusing the message would lose the run.
              if ((isTriasError(e) && e.retryable) || isTransientBusError(e)) throw e;
              o.onRefused?.(d);
              await this.recordRejection(d, e);
              return { type: "term", reason: toTriasError(e).code };
            }
          },
        );
      },
      {
        ...(o.batch ? { batch: o.batch } : {}),
        // A durable deleted under the agent (docs/security.md): recreated and reported, never
        // a silent stop.
        onConsumerLost: (e) => {
          if (e.fromSeq !== undefined)
            this.log.error(
              { durable, reason: e.reason, fromSeq: e.fromSeq },
              "durable consumer disappeared; recreated it from the oldest message not yet settled",
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
    this.#subs.push(sub);
    return sub;
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.#subs.map((s) => s.stop()));
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
