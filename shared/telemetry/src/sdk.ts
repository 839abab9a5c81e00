import { randomUUID } from "node:crypto";
import { diag, metrics as otelMetrics, trace } from "@opentelemetry/api";
import type { MetricReader } from "@opentelemetry/sdk-metrics";
import { ATTR_TRIAS_AGENT, ATTR_TRIAS_ROLE } from "./attributes.js";

// Only agents' main.ts calls initTelemetry. The SDK packages are imported dynamically, so
// a process that exports nothing never loads them: the API stays the no-op.

export interface TelemetryOptions {
  /** service.name, unless OTEL_SERVICE_NAME (or service.name in OTEL_RESOURCE_ATTRIBUTES) says otherwise. */
  serviceName: string;
  /** The agent identity (trias.agent), e.g. `reviewer-2`. */
  agentName: string;
  /** The role (trias.role): proposer, router, reviewer, executor, verifier, console. */
  role: string;
  /** service.instance.id; default a random UUID per process (replicas of one identity differ). */
  instanceId?: string;
  /** service.version, if known. */
  version?: string;
}

export interface Telemetry {
  /** True when an SDK was started (something is exported). */
  readonly enabled: boolean;
  /** Spans are recorded and exported. */
  readonly tracing: boolean;
  /** Metrics are collected (OTLP and/or Prometheus). */
  readonly metering: boolean;
  /** The Prometheus scrape URL, when TRIAS_PROMETHEUS_PORT is set. */
  readonly prometheusUrl: string | undefined;
  /** service.instance.id of this process. */
  readonly instanceId: string;
  /** Exports what is buffered now (spans and metrics); never rejects. */
  flush(): Promise<void>;
  /** Flushes and stops the SDK; idempotent; never rejects. */
  shutdown(): Promise<void>;
}

/** The OpenTelemetry specification's default. @default 60_000 ms (OTEL_METRIC_EXPORT_INTERVAL) */
const OTEL_METRIC_EXPORT_INTERVAL_MS = 60_000;
/** The OpenTelemetry specification's default. @default 30_000 ms (OTEL_METRIC_EXPORT_TIMEOUT) */
const OTEL_METRIC_EXPORT_TIMEOUT_MS = 30_000;

function list(name: string): string[] {
  const raw = process.env[name];
  if (raw === undefined) return [];
  return raw
    .split(",")
    .map((s) => s.trim().toLowerCase())
    .filter((s) => s !== "" && s !== "null");
}

function isSet(name: string): boolean {
  const v = process.env[name];
  return v !== undefined && v.trim() !== "";
}

function positiveInt(name: string): number | undefined {
  const raw = process.env[name];
  if (raw === undefined || raw.trim() === "") return undefined;
  const n = Number(raw);
  if (!Number.isFinite(n) || n <= 0) {
    diag.warn(`${name}=${raw} is not a positive number; ignored`);
    return undefined;
  }
  return Math.floor(n);
}

/** What the OTEL_* (and TRIAS_PROMETHEUS_*) environment asks for. Exported for tests and diagnostics. */
export interface TelemetryPlan {
  disabled: boolean;
  traces: boolean;
  /** Metric exporters wanted through OTEL_METRICS_EXPORTER or an OTLP endpoint. */
  metricExporters: string[];
  prometheusPort: number | undefined;
  /** OTEL_LOGS_EXPORTER was set: the SDK's log pipeline is configured from it. */
  logsFromEnv: boolean;
}

export function telemetryPlan(): TelemetryPlan {
  const disabled = process.env["OTEL_SDK_DISABLED"]?.trim().toLowerCase() === "true";
  const anyEndpoint = isSet("OTEL_EXPORTER_OTLP_ENDPOINT");
  const traceList = list("OTEL_TRACES_EXPORTER");
  const traces =
    traceList.length > 0
      ? !(traceList.length === 1 && traceList[0] === "none")
      : anyEndpoint || isSet("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
  const metricList = list("OTEL_METRICS_EXPORTER");
  let metricExporters: string[];
  if (metricList.includes("none")) metricExporters = [];
  else if (metricList.length > 0) metricExporters = [...new Set(metricList)];
  else
    metricExporters = anyEndpoint || isSet("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") ? ["otlp"] : [];
  return {
    disabled,
    traces,
    metricExporters,
    prometheusPort: positiveInt("TRIAS_PROMETHEUS_PORT"),
    logsFromEnv: list("OTEL_LOGS_EXPORTER").length > 0,
  };
}

function noopTelemetry(instanceId: string): Telemetry {
  return {
    enabled: false,
    tracing: false,
    metering: false,
    prometheusUrl: undefined,
    instanceId,
    flush: () => Promise.resolve(),
    shutdown: () => Promise.resolve(),
  };
}

interface Flushable {
  forceFlush?: () => Promise<void>;
  getDelegate?: () => unknown;
}

async function flushGlobals(): Promise<void> {
  const tp = trace.getTracerProvider() as Flushable;
  const delegate = (typeof tp.getDelegate === "function" ? tp.getDelegate() : tp) as Flushable;
  const mp = otelMetrics.getMeterProvider() as Flushable;
  await Promise.all(
    [delegate, mp].map(async (p) => {
      try {
        if (typeof p.forceFlush === "function") await p.forceFlush();
      } catch (err) {
        diag.warn("telemetry flush failed", err);
      }
    }),
  );
}

/**
 * Starts the OpenTelemetry Node SDK when the standard OTEL_* environment asks for an
 * export: OTEL_EXPORTER_OTLP_ENDPOINT (traces and metrics), OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
 * / OTEL_EXPORTER_OTLP_METRICS_ENDPOINT, OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER.
 * Protocol is OTLP HTTP/protobuf unless OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL says otherwise
 * for traces. Everything else (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES,
 * OTEL_METRIC_EXPORT_INTERVAL, OTEL_BSP_*, OTEL_TRACES_SAMPLER, OTEL_PROPAGATORS,
 * OTEL_LOG_LEVEL...) is read by the SDK as the spec says. OTEL_SDK_DISABLED=true starts
 * nothing. TRIAS_PROMETHEUS_PORT (and TRIAS_PROMETHEUS_HOST) adds a Prometheus scrape
 * endpoint for this agent's metrics. With none of these set nothing is started and the
 * returned handle's methods do nothing.
 */
export async function initTelemetry(o: TelemetryOptions): Promise<Telemetry> {
  const instanceId = o.instanceId ?? randomUUID();
  const plan = telemetryPlan();
  if (plan.disabled) return noopTelemetry(instanceId);
  if (!plan.traces && plan.metricExporters.length === 0 && plan.prometheusPort === undefined)
    return noopTelemetry(instanceId);

  const [{ NodeSDK }, resources, sdkMetrics] = await Promise.all([
    import("@opentelemetry/sdk-node"),
    import("@opentelemetry/resources"),
    import("@opentelemetry/sdk-metrics"),
  ]);

  const readers: MetricReader[] = [];
  for (const name of plan.metricExporters) {
    if (name === "otlp") {
      const protocol = (
        process.env["OTEL_EXPORTER_OTLP_METRICS_PROTOCOL"] ??
        process.env["OTEL_EXPORTER_OTLP_PROTOCOL"] ??
        "http/protobuf"
      ).trim();
      if (protocol !== "http/protobuf")
        diag.warn(`OTLP metrics protocol ${protocol} is not supported here; using http/protobuf`);
      const { OTLPMetricExporter } = await import("@opentelemetry/exporter-metrics-otlp-proto");
      const interval = positiveInt("OTEL_METRIC_EXPORT_INTERVAL") ?? OTEL_METRIC_EXPORT_INTERVAL_MS;
      const timeout = Math.min(
        positiveInt("OTEL_METRIC_EXPORT_TIMEOUT") ?? OTEL_METRIC_EXPORT_TIMEOUT_MS,
        interval,
      );
      readers.push(
        new sdkMetrics.PeriodicExportingMetricReader({
          exporter: new OTLPMetricExporter(),
          exportIntervalMillis: interval,
          exportTimeoutMillis: timeout,
        }),
      );
    } else if (name === "console") {
      readers.push(
        new sdkMetrics.PeriodicExportingMetricReader({
          exporter: new sdkMetrics.ConsoleMetricExporter(),
        }),
      );
    } else if (name === "prometheus") {
      const { PrometheusExporter } = await import("@opentelemetry/exporter-prometheus");
      const host = process.env["OTEL_EXPORTER_PROMETHEUS_HOST"];
      const port = positiveInt("OTEL_EXPORTER_PROMETHEUS_PORT");
      readers.push(
        new PrometheusExporter({
          ...(host === undefined ? {} : { host }),
          ...(port === undefined ? {} : { port }),
        }),
      );
    } else {
      diag.warn(
        `unsupported OTEL_METRICS_EXPORTER value ${name}; supported: otlp, prometheus, console, none`,
      );
    }
  }
  let prometheusUrl: string | undefined;
  if (plan.prometheusPort !== undefined) {
    const { PrometheusExporter } = await import("@opentelemetry/exporter-prometheus");
    const host = process.env["TRIAS_PROMETHEUS_HOST"]?.trim() || undefined;
    readers.push(
      new PrometheusExporter({
        port: plan.prometheusPort,
        ...(host === undefined ? {} : { host }),
      }),
    );
    prometheusUrl = `http://${host ?? "127.0.0.1"}:${plan.prometheusPort}/metrics`;
  }

  const own: Record<string, string | number> = {
    "service.name": o.serviceName,
    "service.namespace": "trias",
    "service.instance.id": instanceId,
    "process.pid": process.pid,
    [ATTR_TRIAS_AGENT]: o.agentName,
    [ATTR_TRIAS_ROLE]: o.role,
  };
  if (o.version !== undefined) own["service.version"] = o.version;
  // Detected attributes (OTEL_RESOURCE_ATTRIBUTES, OTEL_SERVICE_NAME, host, os) are merged
  // over ours, so the environment wins. The process detector is left out unless
  // OTEL_NODE_RESOURCE_DETECTORS asks for it: it exports the command line, which may
  // carry secrets.
  const resource = resources.defaultResource().merge(resources.resourceFromAttributes(own));

  const sdk = new NodeSDK({
    resource,
    ...(isSet("OTEL_NODE_RESOURCE_DETECTORS")
      ? {}
      : {
          resourceDetectors: [resources.hostDetector, resources.osDetector, resources.envDetector],
        }),
    instrumentations: [],
    metricReaders: readers,
    // Traces: when asked for, the SDK builds the exporter from OTEL_TRACES_EXPORTER /
    // OTEL_EXPORTER_OTLP_* (default otlp over http/protobuf) with a batch processor
    // configured by OTEL_BSP_*. When not, no tracer provider is registered.
    ...(plan.traces ? {} : { spanProcessors: [] }),
    // Trias logs go to stdout through pino; the SDK's log pipeline only when asked for.
    ...(plan.logsFromEnv ? {} : { logRecordProcessors: [] }),
  });
  sdk.start();

  let stopped: Promise<void> | undefined;
  return {
    enabled: true,
    tracing: plan.traces,
    metering: readers.length > 0,
    prometheusUrl,
    instanceId,
    flush: () => (stopped === undefined ? flushGlobals() : stopped),
    shutdown() {
      stopped ??= sdk.shutdown().catch((err: unknown) => {
        diag.warn("telemetry shutdown failed", err);
      });
      return stopped;
    },
  };
}
