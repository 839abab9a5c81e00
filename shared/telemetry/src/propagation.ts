import {
  context,
  propagation,
  trace,
  type Context,
  type TextMapGetter,
  type TextMapSetter,
} from "@opentelemetry/api";
import { W3CTraceContextPropagator } from "@opentelemetry/core";

// W3C trace context (`traceparent`, `tracestate`) in NATS message headers, which the bus
// exposes as a plain Record<string, string>. When the SDK is started it registers the
// global propagator (W3C trace context + baggage by default, or what OTEL_PROPAGATORS
// says) and that one is used; without the SDK the W3C propagator is called directly, so
// context still travels through a process that exports nothing.

const w3c = new W3CTraceContextPropagator();

const setter: TextMapSetter<Record<string, string>> = {
  set(carrier, key, value) {
    carrier[key] = value;
  },
};

const getter: TextMapGetter<Readonly<Record<string, string>>> = {
  keys(carrier) {
    return Object.keys(carrier);
  },
  get(carrier, key) {
    const exact = carrier[key];
    if (exact !== undefined) return exact;
    // NATS header names are case-sensitive on the wire; accept any casing of ours.
    const lower = key.toLowerCase();
    for (const k of Object.keys(carrier)) if (k.toLowerCase() === lower) return carrier[k];
    return undefined;
  },
};

function globalPropagatorRegistered(): boolean {
  return propagation.fields().length > 0;
}

/**
 * Writes the trace context of `ctx` (default: the active context) into `headers` and
 * returns the same object. Writes nothing when there is no valid span in `ctx`.
 */
export function injectTrace(
  headers: Record<string, string> = {},
  ctx: Context = context.active(),
): Record<string, string> {
  if (globalPropagatorRegistered()) propagation.inject(ctx, headers, setter);
  else w3c.inject(ctx, headers, setter);
  return headers;
}

/**
 * Reads a trace context from `headers` into a new context derived from `base` (default:
 * the active context). Use the result as `parent` of the span that handles the message.
 * Missing or malformed headers give `base` unchanged.
 */
export function extractTrace(
  headers: Readonly<Record<string, string>> | undefined,
  base: Context = context.active(),
): Context {
  if (headers === undefined) return base;
  if (globalPropagatorRegistered()) return propagation.extract(base, headers, getter);
  return w3c.extract(base, headers, getter);
}

/** The trace id and span id of the span in `ctx` (default: active), if one is valid. */
export function traceIds(
  ctx: Context = context.active(),
): { traceId: string; spanId: string } | undefined {
  const sc = trace.getSpanContext(ctx);
  if (sc === undefined || !trace.isSpanContextValid(sc)) return undefined;
  return { traceId: sc.traceId, spanId: sc.spanId };
}
