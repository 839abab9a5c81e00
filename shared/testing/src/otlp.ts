import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { brotliDecompressSync, gunzipSync, inflateSync } from "node:zlib";
import protobuf from "protobufjs";
import { OTLP_PROTO_FILES } from "./otlp-proto.js";

// A real OTLP/HTTP receiver for tests: it listens on loopback, accepts the protobuf
// export requests of the OTel SDK's exporters at /v1/traces, /v1/metrics and /v1/logs,
// decodes them with the OTLP proto definitions and keeps plain objects.

export type OtlpValue =
  string | number | boolean | null | Uint8Array | OtlpValue[] | { [key: string]: OtlpValue };
export type OtlpAttributes = Record<string, OtlpValue>;
export type SpanKindName =
  "UNSPECIFIED" | "INTERNAL" | "SERVER" | "CLIENT" | "PRODUCER" | "CONSUMER";
export type StatusCodeName = "UNSET" | "OK" | "ERROR";

export interface ReceivedScope {
  name: string;
  version: string;
}

export interface ReceivedSpanEvent {
  name: string;
  timeUnixNano: bigint;
  attributes: OtlpAttributes;
}

export interface ReceivedSpanLink {
  traceId: string;
  spanId: string;
  attributes: OtlpAttributes;
}

export interface ReceivedSpan {
  /** 32 lowercase hex characters. */
  traceId: string;
  /** 16 lowercase hex characters. */
  spanId: string;
  /** The parent's span id in hex, '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  kind: SpanKindName;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  durationMs: number;
  attributes: OtlpAttributes;
  events: ReceivedSpanEvent[];
  links: ReceivedSpanLink[];
  status: { code: StatusCodeName; message: string };
  /** Resource attributes of the exporting process. */
  resource: OtlpAttributes;
  /** resource["service.name"], for convenience. */
  serviceName: string;
  scope: ReceivedScope;
}

export interface ReceivedDataPoint {
  attributes: OtlpAttributes;
  startTimeUnixNano: bigint;
  timeUnixNano: bigint;
  /** Gauge and sum points. */
  value?: number;
  /** Histogram (and summary) points. */
  count?: number;
  sum?: number;
  min?: number;
  max?: number;
  bucketCounts?: number[];
  explicitBounds?: number[];
}

export type MetricType =
  "gauge" | "sum" | "histogram" | "exponentialHistogram" | "summary" | "unknown";
export type TemporalityName = "UNSPECIFIED" | "DELTA" | "CUMULATIVE";

export interface ReceivedMetric {
  name: string;
  description: string;
  unit: string;
  type: MetricType;
  temporality?: TemporalityName;
  isMonotonic?: boolean;
  dataPoints: ReceivedDataPoint[];
  resource: OtlpAttributes;
  serviceName: string;
  scope: ReceivedScope;
}

/** The latest data point of one series (metric, resource, scope, attributes). */
export interface ReceivedSeriesPoint extends ReceivedDataPoint {
  name: string;
  unit: string;
  type: MetricType;
  resource: OtlpAttributes;
  serviceName: string;
}

export interface ReceivedLog {
  timeUnixNano: bigint;
  severityNumber: number;
  severityText: string;
  body: OtlpValue;
  attributes: OtlpAttributes;
  traceId: string;
  spanId: string;
  eventName: string;
  resource: OtlpAttributes;
  serviceName: string;
  scope: ReceivedScope;
}

export interface OtlpSnapshot {
  spans: ReceivedSpan[];
  metrics: ReceivedMetric[];
  logs: ReceivedLog[];
}

export interface OtlpRequestRecord {
  path: string;
  status: number;
  contentType: string;
  bytes: number;
  error?: string;
}

export interface OtlpReceiver {
  /** Base URL, e.g. http://127.0.0.1:43117: the value of OTEL_EXPORTER_OTLP_ENDPOINT. */
  readonly url: string;
  readonly port: number;
  /**
   * Environment for an exporting process (child agent or this one) pointed at this
   * receiver, with short batch and export intervals so tests do not wait for defaults.
   */
  exporterEnv(overrides?: Record<string, string>): Record<string, string>;
  /** Every span received so far, in arrival order. */
  spans(): ReceivedSpan[];
  /** Spans of one trace. */
  trace(traceId: string): ReceivedSpan[];
  /** Every metric record received so far (one per metric per export), in arrival order. */
  metrics(): ReceivedMetric[];
  /**
   * The latest point of each series of metric `name` across all exporting processes
   * (right for the default cumulative temporality: sum the values to get totals).
   */
  metricPoints(name: string): ReceivedSeriesPoint[];
  logs(): ReceivedLog[];
  /** Every request, with its outcome (decode errors show up here). */
  requests(): OtlpRequestRecord[];
  /** Resolves with the first truthy value of `pred` over the received data; rejects after `timeoutMs`. */
  waitFor<T>(
    pred: (s: OtlpSnapshot) => T | undefined | null | false | 0 | "",
    timeoutMs?: number,
  ): Promise<T>;
  /** Forgets everything received so far. */
  clear(): void;
  close(): Promise<void>;
}

export interface OtlpReceiverOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
}

// ---- decoding ----

let cachedRoot: protobuf.Root | undefined;

interface OtlpTypes {
  traces: protobuf.Type;
  metrics: protobuf.Type;
  logs: protobuf.Type;
}

function otlpTypes(): OtlpTypes {
  if (cachedRoot === undefined) {
    const root = new protobuf.Root();
    for (const text of OTLP_PROTO_FILES) protobuf.parse(text, root, { keepCase: false });
    root.resolveAll();
    cachedRoot = root;
  }
  return {
    traces: cachedRoot.lookupType(
      "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
    ),
    metrics: cachedRoot.lookupType(
      "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
    ),
    logs: cachedRoot.lookupType("opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest"),
  };
}

type Obj = Record<string, unknown>;

function decode(type: protobuf.Type, bytes: Uint8Array): Obj {
  const message = type.decode(bytes);
  return type.toObject(message, {
    longs: String,
    enums: String,
    defaults: true,
    oneofs: true,
    arrays: true,
    objects: true,
  });
}

function obj(v: unknown): Obj {
  return typeof v === "object" && v !== null ? (v as Obj) : {};
}

function arr(v: unknown): unknown[] {
  return Array.isArray(v) ? v : [];
}

function str(v: unknown): string {
  return typeof v === "string" ? v : "";
}

function num(v: unknown): number {
  if (typeof v === "number") return v;
  if (typeof v === "string" && v !== "") return Number(v);
  return 0;
}

function optNum(v: unknown): number | undefined {
  return v === undefined || v === null ? undefined : num(v);
}

function big(v: unknown): bigint {
  if (typeof v === "string" && v !== "") return BigInt(v);
  if (typeof v === "number") return BigInt(Math.trunc(v));
  return 0n;
}

function hex(v: unknown): string {
  if (v instanceof Uint8Array)
    return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString("hex");
  return "";
}

function bytes(v: unknown): Uint8Array {
  return v instanceof Uint8Array ? new Uint8Array(v) : new Uint8Array();
}

function anyValue(v: unknown): OtlpValue {
  const o = obj(v);
  switch (o["value"]) {
    case "stringValue":
      return str(o["stringValue"]);
    case "boolValue":
      return o["boolValue"] === true;
    case "intValue":
      return num(o["intValue"]);
    case "doubleValue":
      return num(o["doubleValue"]);
    case "arrayValue":
      return arr(obj(o["arrayValue"])["values"]).map(anyValue);
    case "kvlistValue":
      return attributes(obj(o["kvlistValue"])["values"]);
    case "bytesValue":
      return bytes(o["bytesValue"]);
    default:
      return null;
  }
}

function attributes(list: unknown): OtlpAttributes {
  const out: OtlpAttributes = {};
  for (const kv of arr(list)) {
    const k = obj(kv);
    out[str(k["key"])] = anyValue(k["value"]);
  }
  return out;
}

function scopeOf(v: unknown): ReceivedScope {
  const s = obj(v);
  return { name: str(s["name"]), version: str(s["version"]) };
}

function enumSuffix(v: unknown, prefix: string): string {
  const s = str(v);
  return s.startsWith(prefix) ? s.slice(prefix.length) : s;
}

function toSpans(req: Obj): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of arr(req["resourceSpans"])) {
    const resource = attributes(obj(obj(rs)["resource"])["attributes"]);
    const serviceName =
      typeof resource["service.name"] === "string" ? resource["service.name"] : "";
    for (const ss of arr(obj(rs)["scopeSpans"])) {
      const scope = scopeOf(obj(ss)["scope"]);
      for (const sp of arr(obj(ss)["spans"])) {
        const s = obj(sp);
        const start = big(s["startTimeUnixNano"]);
        const end = big(s["endTimeUnixNano"]);
        const status = obj(s["status"]);
        out.push({
          traceId: hex(s["traceId"]),
          spanId: hex(s["spanId"]),
          parentSpanId: hex(s["parentSpanId"]),
          traceState: str(s["traceState"]),
          name: str(s["name"]),
          kind: enumSuffix(s["kind"], "SPAN_KIND_") as SpanKindName,
          startTimeUnixNano: start,
          endTimeUnixNano: end,
          durationMs: Number(end - start) / 1e6,
          attributes: attributes(s["attributes"]),
          events: arr(s["events"]).map((e) => ({
            name: str(obj(e)["name"]),
            timeUnixNano: big(obj(e)["timeUnixNano"]),
            attributes: attributes(obj(e)["attributes"]),
          })),
          links: arr(s["links"]).map((l) => ({
            traceId: hex(obj(l)["traceId"]),
            spanId: hex(obj(l)["spanId"]),
            attributes: attributes(obj(l)["attributes"]),
          })),
          status: {
            code: (enumSuffix(status["code"], "STATUS_CODE_") || "UNSET") as StatusCodeName,
            message: str(status["message"]),
          },
          resource,
          serviceName,
          scope,
        });
      }
    }
  }
  return out;
}

function numberPoint(p: Obj): ReceivedDataPoint {
  const point: ReceivedDataPoint = {
    attributes: attributes(p["attributes"]),
    startTimeUnixNano: big(p["startTimeUnixNano"]),
    timeUnixNano: big(p["timeUnixNano"]),
  };
  if (p["value"] === "asDouble") point.value = num(p["asDouble"]);
  else if (p["value"] === "asInt") point.value = num(p["asInt"]);
  return point;
}

function histogramPoint(p: Obj): ReceivedDataPoint {
  const point: ReceivedDataPoint = {
    attributes: attributes(p["attributes"]),
    startTimeUnixNano: big(p["startTimeUnixNano"]),
    timeUnixNano: big(p["timeUnixNano"]),
    count: num(p["count"]),
    bucketCounts: arr(p["bucketCounts"]).map(num),
    explicitBounds: arr(p["explicitBounds"]).map(num),
  };
  const sum = optNum(p["sum"]);
  const min = optNum(p["min"]);
  const max = optNum(p["max"]);
  if (sum !== undefined) point.sum = sum;
  if (min !== undefined) point.min = min;
  if (max !== undefined) point.max = max;
  return point;
}

function toMetrics(req: Obj): ReceivedMetric[] {
  const out: ReceivedMetric[] = [];
  for (const rm of arr(req["resourceMetrics"])) {
    const resource = attributes(obj(obj(rm)["resource"])["attributes"]);
    const serviceName =
      typeof resource["service.name"] === "string" ? resource["service.name"] : "";
    for (const sm of arr(obj(rm)["scopeMetrics"])) {
      const scope = scopeOf(obj(sm)["scope"]);
      for (const mm of arr(obj(sm)["metrics"])) {
        const m = obj(mm);
        const which = str(m["data"]);
        const data = obj(m[which]);
        const metric: ReceivedMetric = {
          name: str(m["name"]),
          description: str(m["description"]),
          unit: str(m["unit"]),
          type: (["gauge", "sum", "histogram", "exponentialHistogram", "summary"].includes(which)
            ? which
            : "unknown") as MetricType,
          dataPoints: [],
          resource,
          serviceName,
          scope,
        };
        if (data["aggregationTemporality"] !== undefined) {
          metric.temporality = enumSuffix(
            data["aggregationTemporality"],
            "AGGREGATION_TEMPORALITY_",
          ) as TemporalityName;
        }
        if (which === "sum") metric.isMonotonic = data["isMonotonic"] === true;
        const points = arr(data["dataPoints"]).map(obj);
        if (which === "gauge" || which === "sum") metric.dataPoints = points.map(numberPoint);
        else if (which === "histogram") metric.dataPoints = points.map(histogramPoint);
        else if (which === "exponentialHistogram" || which === "summary") {
          metric.dataPoints = points.map((p) => {
            const point: ReceivedDataPoint = {
              attributes: attributes(p["attributes"]),
              startTimeUnixNano: big(p["startTimeUnixNano"]),
              timeUnixNano: big(p["timeUnixNano"]),
              count: num(p["count"]),
            };
            const sum = optNum(p["sum"]);
            if (sum !== undefined) point.sum = sum;
            return point;
          });
        }
        out.push(metric);
      }
    }
  }
  return out;
}

function toLogs(req: Obj): ReceivedLog[] {
  const out: ReceivedLog[] = [];
  for (const rl of arr(req["resourceLogs"])) {
    const resource = attributes(obj(obj(rl)["resource"])["attributes"]);
    const serviceName =
      typeof resource["service.name"] === "string" ? resource["service.name"] : "";
    for (const sl of arr(obj(rl)["scopeLogs"])) {
      const scope = scopeOf(obj(sl)["scope"]);
      for (const lr of arr(obj(sl)["logRecords"])) {
        const l = obj(lr);
        const sev = l["severityNumber"];
        out.push({
          timeUnixNano: big(l["timeUnixNano"]),
          severityNumber:
            typeof sev === "number"
              ? sev
              : SEVERITY_NUMBERS.indexOf(enumSuffix(sev, "SEVERITY_NUMBER_")),
          severityText: str(l["severityText"]),
          body: l["body"] === undefined || l["body"] === null ? null : anyValue(l["body"]),
          attributes: attributes(l["attributes"]),
          traceId: hex(l["traceId"]),
          spanId: hex(l["spanId"]),
          eventName: str(l["eventName"]),
          resource,
          serviceName,
          scope,
        });
      }
    }
  }
  return out;
}

const SEVERITY_NUMBERS = [
  "UNSPECIFIED",
  ...["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"].flatMap((l) => [
    l,
    `${l}2`,
    `${l}3`,
    `${l}4`,
  ]),
];

function decompress(body: Buffer, encoding: string | undefined): Buffer {
  switch ((encoding ?? "").trim().toLowerCase()) {
    case "":
    case "identity":
      return body;
    case "gzip":
    case "x-gzip":
      return gunzipSync(body);
    case "deflate":
      return inflateSync(body);
    case "br":
      return brotliDecompressSync(body);
    default:
      throw new Error(`unsupported content-encoding ${encoding ?? ""}`);
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

function seriesKey(m: ReceivedMetric, p: ReceivedDataPoint): string {
  return JSON.stringify([
    m.name,
    sortedEntries(m.resource),
    m.scope.name,
    sortedEntries(p.attributes),
  ]);
}

function sortedEntries(a: OtlpAttributes): [string, string][] {
  return Object.keys(a)
    .sort()
    .map((k) => [k, JSON.stringify(a[k] instanceof Uint8Array ? Array.from(a[k]) : a[k])]);
}

/** Starts an OTLP/HTTP (protobuf) receiver on loopback. Close it after the test. */
export async function startOtlpReceiver(options: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const types = otlpTypes();
  let spans: ReceivedSpan[] = [];
  let metrics: ReceivedMetric[] = [];
  let logs: ReceivedLog[] = [];
  let requests: OtlpRequestRecord[] = [];

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const path = (req.url ?? "/").split("?")[0] ?? "/";
    const contentType =
      (req.headers["content-type"] ?? "").split(";")[0]?.trim().toLowerCase() ?? "";
    const body = await readBody(req);
    const record: OtlpRequestRecord = { path, status: 200, contentType, bytes: body.length };
    requests.push(record);
    const reply = (status: number, text?: string): void => {
      record.status = status;
      if (text !== undefined) record.error = text;
      res.writeHead(status, {
        "content-type": status === 200 ? "application/x-protobuf" : "text/plain",
      });
      res.end(status === 200 ? undefined : text);
    };
    if (req.method !== "POST") return reply(405, "POST only");
    const type =
      path === "/v1/traces"
        ? types.traces
        : path === "/v1/metrics"
          ? types.metrics
          : path === "/v1/logs"
            ? types.logs
            : undefined;
    if (type === undefined) return reply(404, `unknown path ${path}`);
    if (contentType !== "application/x-protobuf")
      return reply(415, `only application/x-protobuf is decoded, got ${contentType || "none"}`);
    let decoded: Obj;
    try {
      decoded = decode(type, decompress(body, req.headers["content-encoding"]));
    } catch (err) {
      return reply(400, `decode failed: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (type === types.traces) spans.push(...toSpans(decoded));
    else if (type === types.metrics) metrics.push(...toMetrics(decoded));
    else logs.push(...toLogs(decoded));
    // An empty Export*ServiceResponse: full success.
    reply(200);
  };

  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (!res.headersSent) res.writeHead(500).end(String(err));
    });
  });
  server.keepAliveTimeout = 1_000;
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
      server.off("error", reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `http://${host}:${address.port}`;
  const snapshot = (): OtlpSnapshot => ({
    spans: [...spans],
    metrics: [...metrics],
    logs: [...logs],
  });

  return {
    url,
    port: address.port,
    exporterEnv(overrides = {}) {
      return {
        OTEL_EXPORTER_OTLP_ENDPOINT: url,
        OTEL_EXPORTER_OTLP_PROTOCOL: "http/protobuf",
        OTEL_BSP_SCHEDULE_DELAY: "100",
        OTEL_METRIC_EXPORT_INTERVAL: "250",
        OTEL_METRIC_EXPORT_TIMEOUT: "250",
        ...overrides,
      };
    },
    spans: () => [...spans],
    trace: (traceId) => spans.filter((s) => s.traceId === traceId),
    metrics: () => [...metrics],
    metricPoints(name) {
      const latest = new Map<string, ReceivedSeriesPoint>();
      for (const m of metrics) {
        if (m.name !== name) continue;
        for (const p of m.dataPoints) {
          latest.set(seriesKey(m, p), {
            ...p,
            name: m.name,
            unit: m.unit,
            type: m.type,
            resource: m.resource,
            serviceName: m.serviceName,
          });
        }
      }
      return [...latest.values()];
    },
    logs: () => [...logs],
    requests: () => [...requests],
    async waitFor(pred, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const v = pred(snapshot());
        if (v) return v;
        if (Date.now() > deadline) {
          const names = [...new Set(spans.map((s) => s.name))].join(", ");
          const metricNames = [...new Set(metrics.map((m) => m.name))].join(", ");
          const failed = requests
            .filter((r) => r.status !== 200)
            .map((r) => `${r.path} ${r.status} ${r.error ?? ""}`);
          throw new Error(
            `OTLP receiver: condition not met in ${timeoutMs} ms; ${spans.length} spans [${names}], ${metrics.length} metric records [${metricNames}], ${logs.length} logs` +
              (failed.length > 0 ? `; failed requests: ${failed.join("; ")}` : ""),
          );
        }
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    clear() {
      spans = [];
      metrics = [];
      logs = [];
      requests = [];
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
