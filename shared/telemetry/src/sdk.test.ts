// The real OTel Node SDK, started in this process (the SDK is global per process, so this
// file is the only one that starts it), exporting over OTLP/HTTP protobuf to a real
// receiver on loopback that decodes the requests with the OTLP proto definitions.
import { createServer } from "node:net";
import { Writable } from "node:stream";
import { ROOT_CONTEXT, context, trace } from "@opentelemetry/api";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  ATTR_MESSAGING_DESTINATION_NAME,
  ATTR_MESSAGING_MESSAGE_ID,
  ATTR_MESSAGING_OPERATION_TYPE,
  ATTR_MESSAGING_SYSTEM,
  ATTR_TRIAS_AGENT,
  ATTR_TRIAS_POLICY_DIGEST,
  ATTR_TRIAS_REASON_CODE,
  ATTR_TRIAS_RUN,
  ATTR_TRIAS_STEP,
  ATTR_TRIAS_TIER,
  ATTR_TRIAS_VERDICT,
  EVENT_TRIAS_RECOVERY,
  EVENT_TRIAS_REJECTION,
  METRIC_GATE_REJECTIONS,
  METRIC_RECOVERY_ACTIONS,
  METRIC_STEP_DURATION,
  METRIC_STEPS,
  METRIC_VERDICTS,
  SpanKind,
  createLogger,
  extractTrace,
  forStep,
  genAiAttributes,
  initTelemetry,
  injectTrace,
  metrics,
  natsAttributes,
  recordRecovery,
  recordRejection,
  triasAttributes,
  tracingEnabled,
  withSpan,
  type Telemetry,
} from "./index.js";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "@trias/testing";

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

function capture(): { stream: Writable; lines: () => Record<string, unknown>[] } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return {
    stream,
    lines: () =>
      chunks
        .join("")
        .split("\n")
        .filter((l) => l.trim() !== "")
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

describe("telemetry - behaviour", () => {
  let rx: OtlpReceiver;
  let telemetry: Telemetry;
  let promPort: number;
  const saved = { ...process.env };

  beforeAll(async () => {
    rx = await startOtlpReceiver();
    promPort = await freePort();
    Object.assign(process.env, rx.exporterEnv({ TRIAS_PROMETHEUS_PORT: String(promPort) }));
    telemetry = await initTelemetry({
      serviceName: "trias-proposer",
      agentName: "proposer-1",
      role: "proposer",
      instanceId: "proposer-1-a",
    });
  });

  afterAll(async () => {
    await telemetry?.shutdown();
    await rx?.close();
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  it("init starts the SDK from the OTEL env: traces, metrics and the Prometheus endpoint", () => {
    expect(telemetry.enabled).toBe(true);
    expect(telemetry.tracing).toBe(true);
    expect(telemetry.metering).toBe(true);
    expect(telemetry.prometheusUrl).toBe(`http://127.0.0.1:${promPort}/metrics`);
    expect(trace.getTracer("probe").startSpan("probe").isRecording()).toBe(true);
  });

  it("spans are exported over OTLP and decode with one trace id, parent links across a simulated hop, attributes and events", async () => {
    const run = "run-span-test";
    const subject = `trias.proposer.proposal.${run}`;
    let rootTraceId = "";
    let headers: Record<string, string> = {};

    // Process A: the task submission is the root; the proposal is published with the trace context in its headers.
    await withSpan(
      "submit task",
      { kind: SpanKind.SERVER, attributes: triasAttributes({ run, agent: "console" }), root: true },
      async (root) => {
        rootTraceId = root.spanContext().traceId;
        await withSpan(
          "chat gpt-4o-mini",
          {
            kind: SpanKind.CLIENT,
            attributes: genAiAttributes({
              system: "openai",
              model: "gpt-4o-mini",
              inputTokens: 120,
              outputTokens: 40,
            }),
          },
          async () => {
            await new Promise((r) => setTimeout(r, 2));
          },
        );
        withSpan(
          `send trias.proposer.proposal`,
          {
            kind: SpanKind.PRODUCER,
            attributes: {
              ...natsAttributes({ operation: "send", subject, messageId: "msg-1" }),
              ...triasAttributes({ run, step: 1 }),
            },
          },
          () => {
            headers = injectTrace({ "Nats-Msg-Id": "msg-1" });
          },
        );
      },
    );
    expect(headers["traceparent"]).toMatch(new RegExp(`^00-${rootTraceId}-[0-9a-f]{16}-01$`));

    // Process B: only the headers crossed; the handler's span continues the trace. Its options
    // come from a function, as on the agents' hot path: built because tracing is on.
    expect(tracingEnabled()).toBe(true);
    const received = { ...headers };
    await withSpan(
      "process trias.proposer.proposal",
      () => ({
        parent: extractTrace(received, ROOT_CONTEXT),
        kind: SpanKind.CONSUMER,
        attributes: {
          ...natsAttributes({ operation: "process", subject, messageId: "msg-1" }),
          ...triasAttributes({ run, step: 1, tier: "full", policyDigest: "sha256:abc" }),
        },
      }),
      async (span) => {
        await new Promise((r) => setTimeout(r, 1)); // the active span survives an await
        recordRejection({ code: "stale", reason: "expired 3 s ago" });
        recordRecovery({ action: "retry", reason: "tool timeout" }, span);
        span.setAttribute(ATTR_TRIAS_VERDICT, "approve");
        withSpan("evaluate policy", {}, () => undefined);
      },
    );
    await expect(
      withSpan("call tool", { kind: SpanKind.CLIENT }, async () =>
        Promise.reject(new Error("tool exploded")),
      ),
    ).rejects.toThrow("tool exploded");

    await telemetry.flush();
    const spans = await rx.waitFor((s) => {
      const ours = s.spans.filter((x) => x.traceId === rootTraceId);
      return ours.length >= 5 && s.spans.some((x) => x.name === "call tool") ? ours : undefined;
    });
    const byName = (n: string): ReceivedSpan => {
      const s = spans.find((x) => x.name === n);
      if (s === undefined)
        throw new Error(`span ${n} not received; got ${spans.map((x) => x.name).join(", ")}`);
      return s;
    };
    const submit = byName("submit task");
    const chat = byName("chat gpt-4o-mini");
    const publish = byName("send trias.proposer.proposal");
    const handle = byName("process trias.proposer.proposal");
    const policy = byName("evaluate policy");

    expect(submit.traceId).toMatch(/^[0-9a-f]{32}$/);
    expect(new Set(spans.map((s) => s.traceId))).toEqual(new Set([rootTraceId]));
    expect(submit.parentSpanId).toBe("");
    expect(chat.parentSpanId).toBe(submit.spanId);
    expect(publish.parentSpanId).toBe(submit.spanId);
    expect(handle.parentSpanId).toBe(publish.spanId);
    expect(policy.parentSpanId).toBe(handle.spanId);
    expect(headers["traceparent"]).toBe(`00-${rootTraceId}-${publish.spanId}-01`);

    expect(submit.kind).toBe("SERVER");
    expect(publish.kind).toBe("PRODUCER");
    expect(handle.kind).toBe("CONSUMER");
    expect(chat.kind).toBe("CLIENT");
    expect(publish.attributes).toMatchObject({
      [ATTR_MESSAGING_SYSTEM]: "nats",
      [ATTR_MESSAGING_OPERATION_TYPE]: "send",
      [ATTR_MESSAGING_DESTINATION_NAME]: subject,
      [ATTR_MESSAGING_MESSAGE_ID]: "msg-1",
      [ATTR_TRIAS_RUN]: run,
      [ATTR_TRIAS_STEP]: 1,
    });
    expect(handle.attributes).toMatchObject({
      [ATTR_MESSAGING_OPERATION_TYPE]: "process",
      [ATTR_TRIAS_TIER]: "full",
      [ATTR_TRIAS_POLICY_DIGEST]: "sha256:abc",
      [ATTR_TRIAS_VERDICT]: "approve",
    });
    expect(chat.attributes).toMatchObject({
      "gen_ai.system": "openai",
      "gen_ai.request.model": "gpt-4o-mini",
      "gen_ai.usage.input_tokens": 120,
      "gen_ai.usage.output_tokens": 40,
    });
    expect(chat.durationMs).toBeGreaterThan(0);
    expect(handle.events.map((e) => e.name)).toEqual([EVENT_TRIAS_REJECTION, EVENT_TRIAS_RECOVERY]);
    expect(handle.events[0]?.attributes).toEqual({
      [ATTR_TRIAS_REASON_CODE]: "stale",
      "trias.reason": "expired 3 s ago",
    });
    expect(handle.events[1]?.attributes).toEqual({
      "trias.recovery.action": "retry",
      "trias.reason": "tool timeout",
    });

    const failed = rx.spans().find((s) => s.name === "call tool");
    expect(failed?.status).toEqual({ code: "ERROR", message: "tool exploded" });
    expect(failed?.events[0]?.name).toBe("exception");
    expect(failed?.events[0]?.attributes["exception.message"]).toBe("tool exploded");
    expect(failed?.attributes["error.type"]).toBe("Error");
    expect(submit.status.code).toBe("UNSET");

    expect(submit.serviceName).toBe("trias-proposer");
    expect(submit.resource).toMatchObject({
      "service.name": "trias-proposer",
      "service.instance.id": "proposer-1-a",
      [ATTR_TRIAS_AGENT]: "proposer-1",
      "trias.role": "proposer",
    });
    expect(submit.scope.name).toBe("trias");
    expect(rx.requests().every((r) => r.status === 200)).toBe(true);
  });

  it("log lines carry the trace_id and span_id of the active span, and run and step", async () => {
    const out = capture();
    const log = createLogger({ agent: "proposer-1", role: "proposer", destination: out.stream });
    log.info("before any span");
    const ids = { traceId: "", spanId: "", childSpanId: "" };
    await withSpan("handle", { root: true }, async (span) => {
      ids.traceId = span.spanContext().traceId;
      ids.spanId = span.spanContext().spanId;
      await new Promise((r) => setTimeout(r, 1)); // the context survives an await
      forStep(log, "run-log", 2).info("inside");
      withSpan("inner", {}, (inner) => {
        ids.childSpanId = inner.spanContext().spanId;
        log.warn("deeper");
      });
    });
    // Concurrent handlers each see their own span.
    const [a, b] = await Promise.all(
      ["a", "b"].map((n) =>
        withSpan(n, { root: true }, async (span) => {
          await new Promise((r) => setTimeout(r, 3));
          log.info({ handler: n }, "concurrent");
          return span.spanContext().traceId;
        }),
      ),
    );
    const lines = out.lines();
    expect(lines[0]).not.toHaveProperty("trace_id");
    expect(lines[1]).toMatchObject({
      msg: "inside",
      trace_id: ids.traceId,
      span_id: ids.spanId,
      run: "run-log",
      step: 2,
      agent: "proposer-1",
      role: "proposer",
    });
    expect(lines[2]).toMatchObject({
      msg: "deeper",
      trace_id: ids.traceId,
      span_id: ids.childSpanId,
    });
    const conc = lines.filter((l) => l["msg"] === "concurrent");
    expect(conc.find((l) => l["handler"] === "a")?.["trace_id"]).toBe(a);
    expect(conc.find((l) => l["handler"] === "b")?.["trace_id"]).toBe(b);
    expect(a).not.toBe(b);
    expect(context.active()).toBe(ROOT_CONTEXT);
  });

  it("governance metrics are exported over OTLP with the right counts, and on the Prometheus endpoint", async () => {
    metrics.stepCompleted("full", "verified", 120);
    metrics.stepCompleted("full", "verified", 80);
    metrics.stepCompleted("light", "failed");
    metrics.verdict("reviewer-1", "approve");
    metrics.verdict("reviewer-2", "approve");
    metrics.verdict("reviewer-2", "reject");
    metrics.gateRejection("stale");
    metrics.gateRejection("stale");
    metrics.gateRejection("bad_signature");
    metrics.recoveryAction("retry");
    metrics.phaseDuration("full", "review", 40);

    await telemetry.flush();
    await rx.waitFor((s) => s.metrics.some((m) => m.name === METRIC_RECOVERY_ACTIONS));

    const sumWhere = (name: string, attrs: Record<string, string>): number =>
      rx
        .metricPoints(name)
        .filter((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))
        .reduce((n, p) => n + (p.value ?? 0), 0);

    expect(sumWhere(METRIC_STEPS, { "trias.tier": "full", "trias.outcome": "verified" })).toBe(2);
    expect(sumWhere(METRIC_STEPS, { "trias.tier": "light", "trias.outcome": "failed" })).toBe(1);
    expect(sumWhere(METRIC_VERDICTS, { "trias.reviewer": "reviewer-2" })).toBe(2);
    expect(sumWhere(METRIC_VERDICTS, { "trias.verdict": "approve" })).toBe(2);
    expect(sumWhere(METRIC_GATE_REJECTIONS, { "trias.reason_code": "stale" })).toBe(2);
    expect(sumWhere(METRIC_GATE_REJECTIONS, {})).toBe(3);
    expect(sumWhere(METRIC_RECOVERY_ACTIONS, { "trias.recovery.action": "retry" })).toBe(1);

    const steps = rx.metrics().find((m) => m.name === METRIC_STEPS);
    expect(steps).toMatchObject({
      type: "sum",
      isMonotonic: true,
      temporality: "CUMULATIVE",
      serviceName: "trias-proposer",
    });
    expect(steps?.resource["trias.agent"]).toBe("proposer-1");

    const total = rx
      .metricPoints(METRIC_STEP_DURATION)
      .find(
        (p) => p.attributes["trias.tier"] === "full" && p.attributes["trias.phase"] === "total",
      );
    expect(total).toMatchObject({
      type: "histogram",
      unit: "ms",
      count: 2,
      sum: 200,
      min: 80,
      max: 120,
    });
    expect(total?.explicitBounds).toContain(100);
    const review = rx
      .metricPoints(METRIC_STEP_DURATION)
      .find((p) => p.attributes["trias.phase"] === "review");
    expect(review).toMatchObject({ count: 1, sum: 40 });

    const scrape = await fetch(`http://127.0.0.1:${promPort}/metrics`).then((r) => r.text());
    expect(scrape).toMatch(/trias_steps_total\{[^}]*trias_tier="full"[^}]*\} 2/);
    expect(scrape).toContain("trias_gate_rejections_total");
  });
});
