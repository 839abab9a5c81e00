import { errors } from "@nats-io/transport-node";
import { JetStreamApiCodes, JetStreamApiError, JetStreamError } from "@nats-io/jetstream";
import { jserrors } from "@nats-io/jetstream/internal";
import { isTriasError, type ErrorCode } from "@trias/protocol";

/**
 * What a failure while handling a message says about the message.
 * - `transient`: the world around it failed (a timeout, a lost connection, a server or
 *   stream not available). The message is fine: it is retried with backoff, never refused.
 * - `refusal`: something is wrong with the message itself (a TriasError that is not
 *   retryable: a bad signature, a failed check). Refused, with a signed rejection record.
 * - `unknown`: neither (a bug, a misconfiguration). Retried a few times in case it passes,
 *   then refused as `internal` so that the run shows why it stopped.
 */
export type FailureClass = "transient" | "refusal" | "unknown";

export interface Failure {
  class: FailureClass;
  /** A stable name for the log and the rejection record: the TriasError code, or the library's. */
  code: string;
}

/** TriasError codes that mean "not now" whatever the thrower said about retrying. */
const TRANSIENT_CODES: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "bus_unavailable",
  "timeout",
  "rate_limited",
]);

/**
 * Node system error codes of a network call that did not get through (a tool's HTTP or MCP
 * server, the model API): the call may pass later.
 */
const TRANSIENT_SYSCALL_CODES: ReadonlySet<string> = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "EAI_AGAIN",
  "UND_ERR_CONNECT_TIMEOUT",
  "UND_ERR_SOCKET",
]);

/**
 * HTTP statuses a JetStream API error carries when the server, not the request, is the
 * problem: request timeout, conflict (another writer, a consumer deleted under a pull),
 * too many requests, and the 5xx family (JetStream not ready, no leader, stream offline).
 */
function transientStatus(status: number): boolean {
  return status === 408 || status === 409 || status === 429 || status >= 500;
}

/**
 * JetStream API codes of a compare-and-set that lost to another writer (status 400): the
 * redelivery reads the new state and decides again. Not-found (404) is transient too: a
 * stream or consumer an operator is recreating.
 */
const CONFLICT_CODES: ReadonlySet<number> = new Set([
  JetStreamApiCodes.StreamWrongLastSequence,
  JetStreamApiCodes.StreamWrongLastSequenceUnknown,
]);

/** The client's errors of a request or a connection that did not get through, by class. */
const TRANSIENT_NATS_ERRORS: readonly (readonly [abstract new (...a: never[]) => Error, string])[] =
  [
    [errors.TimeoutError, "nats_timeout"],
    [errors.NoRespondersError, "nats_no_responders"],
    [errors.RequestError, "nats_request"],
    [errors.ConnectionError, "nats_connection"],
    [errors.ClosedConnectionError, "nats_connection_closed"],
    [errors.DrainingConnectionError, "nats_connection_draining"],
    [errors.ProtocolError, "nats_protocol"],
  ];

/** Causes followed at most (a cause chain is short; a cycle must not hang the classifier). */
const MAX_CAUSE_DEPTH = 8;

/**
 * The one classification every agent applies to what its handler threw (docs/soak.md): by
 * error class and code, never by message text. A cause chain is followed, so a wrapper
 * around a timeout is a timeout.
 */
export function classifyFailure(e: unknown): Failure {
  let cur: unknown = e;
  let first: Failure | undefined;
  for (let depth = 0; depth < MAX_CAUSE_DEPTH && cur !== undefined && cur !== null; depth++) {
    const f = classifyOne(cur);
    if (f.class !== "unknown") return f;
    first ??= f;
    cur = (cur as { cause?: unknown }).cause;
  }
  return first ?? { class: "unknown", code: "internal" };
}

/** Whether `e` passes with time (classifyFailure's `transient`): always retried, never refused. */
export function isTransientFailure(e: unknown): boolean {
  return classifyFailure(e).class === "transient";
}

function classifyOne(e: unknown): Failure {
  if (isTriasError(e)) {
    if (e.retryable || TRANSIENT_CODES.has(e.code)) return { class: "transient", code: e.code };
    // `internal` is what toTriasError calls anything it does not know: not a verdict.
    return e.code === "internal"
      ? { class: "unknown", code: e.code }
      : { class: "refusal", code: e.code };
  }
  if (e instanceof JetStreamApiError) {
    return transientStatus(e.status) || e.status === 404 || CONFLICT_CODES.has(e.code)
      ? { class: "transient", code: `jetstream_${e.code}` }
      : { class: "unknown", code: `jetstream_${e.code}` };
  }
  if (e instanceof jserrors.JetStreamNotEnabled)
    return { class: "transient", code: "jetstream_not_enabled" };
  // JetStreamStatusError and the consumer's own failures (heartbeats missed, consumer gone).
  if (e instanceof JetStreamError) return { class: "transient", code: "jetstream" };
  for (const [cls, code] of TRANSIENT_NATS_ERRORS)
    if (e instanceof cls) return { class: "transient", code };
  // Authorization and permission errors are the deployment's, not the message's; they do
  // not pass by waiting either: unknown, so they end in a visible refusal.
  const sys = (e as { code?: unknown })?.code;
  if (typeof sys === "string" && TRANSIENT_SYSCALL_CODES.has(sys))
    return { class: "transient", code: sys };
  // AbortSignal.timeout() rejects with a DOMException named TimeoutError.
  if (e instanceof DOMException && e.name === "TimeoutError")
    return { class: "transient", code: "timeout" };
  return { class: "unknown", code: "internal" };
}

/**
 * Deliveries an `unknown` failure is retried for before it is refused: enough for a passing
 * glitch, few enough that a run stopped by a bug shows why within seconds (backoffMs: 0.25 s,
 * 0.5 s, 1 s, 2 s between them).
 * @default 5
 */
export const UNKNOWN_FAILURE_ATTEMPTS = 5;

/** What to do with a message whose handling failed. */
export type FailureAction = { type: "retry"; delayMs: number } | { type: "refuse" };

/**
 * Retry or refuse, from the failure's class and the delivery count: a transient failure is
 * never refused, a refusal always is, an unknown one after UNKNOWN_FAILURE_ATTEMPTS.
 */
export function failureAction(f: Failure, deliveryCount: number): FailureAction {
  switch (f.class) {
    case "transient":
      return { type: "retry", delayMs: backoffMs(deliveryCount) };
    case "refusal":
      return { type: "refuse" };
    case "unknown":
      return deliveryCount >= UNKNOWN_FAILURE_ATTEMPTS
        ? { type: "refuse" }
        : { type: "retry", delayMs: backoffMs(deliveryCount) };
  }
}

/**
 * Delay before the next delivery after the n-th failed one: 250 ms, doubling, at most 30 s.
 */
export function backoffMs(deliveryCount: number): number {
  return Math.min(30_000, 250 * 2 ** Math.max(0, deliveryCount - 1));
}
