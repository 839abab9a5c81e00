import {
  context,
  trace,
  INVALID_SPAN_CONTEXT,
  ProxyTracerProvider,
  SpanKind,
  SpanStatusCode,
  type Attributes,
  type AttributeValue,
  type Context,
  type Link,
  type Span,
  type SpanOptions as OtelSpanOptions,
  type TimeInput,
  type Tracer,
} from "@opentelemetry/api";
import {
  ATTR_ERROR_TYPE,
  ATTR_TRIAS_REASON,
  ATTR_TRIAS_REASON_CODE,
  ATTR_TRIAS_RECOVERY_ACTION,
  EVENT_TRIAS_RECOVERY,
  EVENT_TRIAS_REJECTION,
} from "./attributes.js";

/** Instrumentation scope of every Trias span and instrument. */
export const INSTRUMENTATION_SCOPE = "trias";

// A ProxyTracer: it delegates to the SDK's tracer once one is registered, and is the
// no-op tracer until then (or forever, when the SDK is not started).
const proxyTracer: Tracer = trace.getTracer(INSTRUMENTATION_SCOPE);

/**
 * Whether spans are recorded anywhere: true once a tracer provider (the SDK) is registered.
 * Until then a span is pure overhead on every message (a context, a span, attribute
 * objects), so hot paths skip building them.
 */
export function tracingEnabled(): boolean {
  const p = trace.getTracerProvider();
  return (
    !(p instanceof ProxyTracerProvider) || p.getDelegateTracer(INSTRUMENTATION_SCOPE) !== undefined
  );
}

/** The span handed to `withSpan`'s function when tracing is off: every call on it is a no-op. */
const OFF = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** The tracer Trias code uses (no-op unless the SDK is started). */
export function tracer(): Tracer {
  return proxyTracer;
}

export interface WithSpanOptions {
  /** Parent context, e.g. `extractTrace(msg.headers)`; default: the active context. */
  parent?: Context;
  /** Default INTERNAL. PRODUCER for a publish, CONSUMER for handling a message, CLIENT for a model or tool call. */
  kind?: SpanKind;
  attributes?: Attributes;
  links?: Link[];
  /** Start a new trace, ignoring any parent. */
  root?: boolean;
  startTime?: TimeInput;
}

function isPromiseLike(v: unknown): v is PromiseLike<unknown> {
  return (
    (typeof v === "object" || typeof v === "function") &&
    v !== null &&
    typeof (v as { then?: unknown }).then === "function"
  );
}

/** Marks `span` failed with `error`: an `exception` event, status ERROR and `error.type`. */
export function recordError(span: Span, error: unknown): void {
  if (error instanceof Error) {
    span.recordException(error);
    span.setStatus({ code: SpanStatusCode.ERROR, message: error.message });
    const code = (error as { code?: unknown }).code;
    span.setAttribute(ATTR_ERROR_TYPE, typeof code === "string" && code !== "" ? code : error.name);
  } else {
    const message = typeof error === "string" ? error : safeString(error);
    span.recordException(message);
    span.setStatus({ code: SpanStatusCode.ERROR, message });
    span.setAttribute(ATTR_ERROR_TYPE, "_OTHER");
  }
}

function safeString(v: unknown): string {
  try {
    return String(v);
  } catch {
    return "unknown error";
  }
}

/**
 * Runs `fn` inside a new span that is the active span for everything `fn` does (including
 * awaited work, when the SDK's context manager is registered). A thrown error or a
 * rejected promise is recorded on the span (exception event, status ERROR) and rethrown;
 * the span always ends. Success leaves the status UNSET, as the OTel spec recommends.
 * Returns what `fn` returns (a promise stays a promise). `options` may be a function, called
 * only when tracing is on, so a hot path builds no attributes for a span nobody records.
 */
export function withSpan<T>(
  name: string,
  spanOptions: WithSpanOptions | (() => WithSpanOptions),
  fn: (span: Span) => T,
): T {
  // Without a provider the span records nothing; trace context still travels in the signed
  // envelope (the host falls back to the handled message's context when it emits).
  if (!tracingEnabled()) return fn(OFF);
  const options = typeof spanOptions === "function" ? spanOptions() : spanOptions;
  const parent = options.parent ?? context.active();
  const otel: OtelSpanOptions = { kind: options.kind ?? SpanKind.INTERNAL };
  if (options.attributes !== undefined) otel.attributes = options.attributes;
  if (options.links !== undefined) otel.links = options.links;
  if (options.root !== undefined) otel.root = options.root;
  if (options.startTime !== undefined) otel.startTime = options.startTime;
  const span = proxyTracer.startSpan(name, otel, parent);
  return context.with(trace.setSpan(parent, span), () => {
    let result: T;
    try {
      result = fn(span);
    } catch (error) {
      recordError(span, error);
      span.end();
      throw error;
    }
    if (isPromiseLike(result)) {
      return result.then(
        (value) => {
          span.end();
          return value;
        },
        (error: unknown) => {
          recordError(span, error);
          span.end();
          throw error;
        },
      ) as T;
    }
    span.end();
    return result;
  });
}

/** The active span, or undefined (always undefined without the SDK). */
export function activeSpan(): Span | undefined {
  return trace.getActiveSpan();
}

export interface RejectionEvent {
  /** Machine-readable reason, e.g. the gate's rejection code. */
  code: string;
  /** Human-readable detail. Never put secrets or payloads here. */
  reason?: string;
  attributes?: Attributes;
}

/** Adds a `trias.rejection` event (with its reason) to `span` (default: the active span). */
export function recordRejection(
  event: RejectionEvent,
  span: Span | undefined = trace.getActiveSpan(),
): void {
  if (span === undefined) return;
  const a: Attributes = { ...event.attributes, [ATTR_TRIAS_REASON_CODE]: event.code };
  if (event.reason !== undefined) a[ATTR_TRIAS_REASON] = event.reason;
  span.addEvent(EVENT_TRIAS_REJECTION, a);
}

export interface RecoveryEvent {
  /** retry, replan, rollback, escalate, quarantine. */
  action: string;
  reason?: string;
  attributes?: Attributes;
}

/** Adds a `trias.recovery` event (action and reason) to `span` (default: the active span). */
export function recordRecovery(
  event: RecoveryEvent,
  span: Span | undefined = trace.getActiveSpan(),
): void {
  if (span === undefined) return;
  const a: Attributes = { ...event.attributes, [ATTR_TRIAS_RECOVERY_ACTION]: event.action };
  if (event.reason !== undefined) a[ATTR_TRIAS_REASON] = event.reason;
  span.addEvent(EVENT_TRIAS_RECOVERY, a);
}

/** Sets one attribute on the active span, if any (convenience for deep call sites). */
export function setActiveAttribute(key: string, value: AttributeValue): void {
  trace.getActiveSpan()?.setAttribute(key, value);
}

export { SpanKind, SpanStatusCode };
