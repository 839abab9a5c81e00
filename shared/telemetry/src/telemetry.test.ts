// Library behaviour without the SDK: propagation, logging, redaction, the no-op init.
// The SDK is global per process; tests that start it are in sdk.test.ts.
import { Writable } from "node:stream";
import { metrics as otelMetrics, ROOT_CONTEXT, trace, TraceFlags } from "@opentelemetry/api";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import {
  createLogger,
  extractTrace,
  forStep,
  initTelemetry,
  injectTrace,
  metrics,
  REDACTED,
  scrubSecrets,
  telemetryPlan,
  traceIds,
  tracingEnabled,
  withSpan,
} from "./index.js";

const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const SPAN_ID = "00f067aa0ba902b7";

function capture(): {
  stream: Writable;
  lines: () => Record<string, unknown>[];
  text: () => string;
} {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  const text = (): string => chunks.join("");
  return {
    stream,
    text,
    lines: () =>
      text()
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

const OTEL_KEYS = () =>
  Object.keys(process.env).filter(
    (k) => k.startsWith("OTEL_") || k.startsWith("TRIAS_PROMETHEUS") || k === "LOG_LEVEL",
  );

describe("telemetry - behaviour", () => {
  let saved: Record<string, string | undefined> = {};
  beforeEach(() => {
    saved = {};
    for (const k of OTEL_KEYS()) {
      saved[k] = process.env[k];
      delete process.env[k];
    }
  });
  afterEach(() => {
    for (const k of OTEL_KEYS()) delete process.env[k];
    for (const [k, v] of Object.entries(saved)) if (v !== undefined) process.env[k] = v;
  });

  it("inject and extract round-trip the W3C trace context through message headers without the SDK", () => {
    const sent = trace.setSpanContext(ROOT_CONTEXT, {
      traceId: TRACE_ID,
      spanId: SPAN_ID,
      traceFlags: TraceFlags.SAMPLED,
      isRemote: false,
    });
    const headers = injectTrace({ "Nats-Msg-Id": "m1" }, sent);
    expect(headers["traceparent"]).toBe(`00-${TRACE_ID}-${SPAN_ID}-01`);
    expect(headers["Nats-Msg-Id"]).toBe("m1");

    // The other process: only the headers crossed.
    const received = extractTrace({ ...headers }, ROOT_CONTEXT);
    const sc = trace.getSpanContext(received);
    expect(sc?.traceId).toBe(TRACE_ID);
    expect(sc?.spanId).toBe(SPAN_ID);
    expect(sc?.isRemote).toBe(true);
    expect(traceIds(received)).toEqual({ traceId: TRACE_ID, spanId: SPAN_ID });

    // Header names in another casing still work; garbage and absence give the base context.
    expect(
      trace.getSpanContext(
        extractTrace({ Traceparent: headers["traceparent"] ?? "" }, ROOT_CONTEXT),
      )?.traceId,
    ).toBe(TRACE_ID);
    expect(
      trace.getSpanContext(extractTrace({ traceparent: "00-zz-yy-01" }, ROOT_CONTEXT)),
    ).toBeUndefined();
    expect(extractTrace(undefined, ROOT_CONTEXT)).toBe(ROOT_CONTEXT);
    // Nothing to inject from a context without a span.
    expect(injectTrace({}, ROOT_CONTEXT)).toEqual({});
  });

  it("with no OTEL env, init starts nothing and the API stays the no-op", async () => {
    expect(telemetryPlan()).toMatchObject({
      disabled: false,
      traces: false,
      metricExporters: [],
      prometheusPort: undefined,
    });
    const t = await initTelemetry({
      serviceName: "trias-test",
      agentName: "tester",
      role: "proposer",
    });
    expect(t.enabled).toBe(false);
    expect(t.tracing).toBe(false);
    expect(t.metering).toBe(false);
    const span = trace.getTracer("x").startSpan("probe");
    expect(span.isRecording()).toBe(false);
    span.end();
    // No meter provider was registered: instruments are the no-op ones and calls are harmless.
    expect(otelMetrics.getMeterProvider().constructor.name).toBe("NoopMeterProvider");
    metrics.stepCompleted("full", "verified", 12);
    metrics.verdict("reviewer-1", "approve");
    metrics.gateRejection("stale");
    metrics.recoveryAction("retry");
    metrics.phaseDuration("full", "review", 3);
    await t.flush();
    await t.shutdown();
  });

  it("OTEL_SDK_DISABLED and OTEL_TRACES_EXPORTER=none are honoured by the plan", async () => {
    process.env["OTEL_EXPORTER_OTLP_ENDPOINT"] = "http://127.0.0.1:1";
    expect(telemetryPlan()).toMatchObject({ traces: true, metricExporters: ["otlp"] });
    process.env["OTEL_TRACES_EXPORTER"] = "none";
    process.env["OTEL_METRICS_EXPORTER"] = "none";
    expect(telemetryPlan()).toMatchObject({ traces: false, metricExporters: [] });
    process.env["OTEL_SDK_DISABLED"] = "true";
    const t = await initTelemetry({ serviceName: "s", agentName: "a", role: "r" });
    expect(t.enabled).toBe(false);
  });

  it("withSpan returns values, rethrows errors and keeps promises without the SDK", async () => {
    expect(withSpan("sync", {}, () => 7)).toBe(7);
    await expect(withSpan("async", {}, () => Promise.resolve(8))).resolves.toBe(8);
    expect(() =>
      withSpan("throws", {}, () => {
        throw new Error("boom");
      }),
    ).toThrow("boom");
    await expect(withSpan("rejects", {}, () => Promise.reject(new Error("later")))).rejects.toThrow(
      "later",
    );
  });

  it("withSpan without the SDK builds no span options and hands fn a span that records nothing", () => {
    trace.disable();
    expect(tracingEnabled()).toBe(false);
    let built = 0;
    const recording = withSpan(
      "process",
      () => {
        built++;
        return { attributes: { a: 1 } };
      },
      (span) => span.isRecording(),
    );
    expect(recording).toBe(false);
    expect(built).toBe(0);
  });

  it("logs are JSON lines with agent, role, run, step and level from LOG_LEVEL", () => {
    process.env["LOG_LEVEL"] = "debug";
    const out = capture();
    const log = createLogger({ agent: "reviewer-2", role: "reviewer", destination: out.stream });
    log.trace("not shown");
    log.debug("shown");
    forStep(log, "run-1", 3, 1).info({ tool: "fs.write" }, "step started");
    const lines = out.lines();
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({
      level: "debug",
      agent: "reviewer-2",
      role: "reviewer",
      msg: "shown",
    });
    expect(lines[1]).toMatchObject({
      level: "info",
      agent: "reviewer-2",
      role: "reviewer",
      run: "run-1",
      step: 3,
      attempt: 1,
      tool: "fs.write",
    });
    // No span is active (and no SDK): no trace fields rather than zeros.
    expect(lines[1]).not.toHaveProperty("trace_id");
    expect(typeof lines[1]?.["time"]).toBe("string");
  });

  it("never logs planted secrets: JWK private key, NATS password, tokens, PEM keys, seeds", () => {
    const out = capture();
    const log = createLogger({
      agent: "executor",
      role: "executor",
      destination: out.stream,
      level: "trace",
    });
    const d = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const natsPass = "n4ts-P4ssw0rd-planted";
    const token = "tok_live_planted_123456";
    const pem =
      "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPLANTEDPLANTEDPLANTEDPLANTEDPLANTED\n-----END PRIVATE KEY-----";
    const seed = "SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU";
    const jwk = { kty: "OKP", crv: "Ed25519", x: "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", d };

    log.info({ key: jwk }, "loaded signing key");
    log.info(jwk, "key as merge object");
    log.info({ identity: { jwk } }, "nested jwk");
    log.info({ nats: { user: "executor", password: natsPass, pass: natsPass } }, "connecting");
    log.info(
      {
        config: {
          nats: { servers: ["nats://127.0.0.1:4222"], auth: { password: natsPass, token } },
        },
      },
      "deep config",
    );
    log.warn({ headers: { authorization: `Bearer ${token}` }, authorization: token }, "request");
    log.error({ secret: "s3cr3t-planted", privateKey: pem }, "bad");
    log.info(`connecting to nats://executor:${natsPass}@127.0.0.1:4222`);
    log.info("loaded %s", pem);
    log.info({ seed }, "seed field");
    log.info(`seed inline ${seed}`);
    log.error(new Error(`auth failed with Bearer ${token}`), "error with token");
    log.child({ creds: { password: natsPass } }).info("child bindings");

    const text = out.text();
    for (const planted of [d, natsPass, token, "s3cr3t-planted", "PLANTEDPLANTED", seed]) {
      expect(text, `leaked ${planted}`).not.toContain(planted);
    }
    expect(text).toContain(REDACTED);
    // Public parts are still there; logging stays useful.
    const lines = out.lines();
    expect(lines[0]).toMatchObject({ key: { kty: "OKP", x: jwk.x, d: REDACTED } });
    expect(lines[1]).toMatchObject({ kty: "OKP", d: REDACTED });
    expect(lines[3]).toMatchObject({ nats: { user: "executor", password: REDACTED } });
    expect(lines[7]?.["msg"]).toBe(`connecting to nats://executor:${REDACTED}@127.0.0.1:4222`);
    // The caller's objects are not mutated by redaction.
    expect(jwk.d).toBe(d);
  });

  it("scrubSecrets censors by key at any depth and leaves other values alone", () => {
    expect(scrubSecrets({ a: { b: { c: { password: "x", ok: 1 } } }, d: 4 })).toEqual({
      a: { b: { c: { password: REDACTED, ok: 1 } } },
      d: 4,
    });
  });
});
