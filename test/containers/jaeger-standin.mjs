// Stand-in for jaegertracing/all-in-one in `pnpm test:containers` (no registry to pull it
// from): @trias/testing's OTLP/HTTP receiver on 4318, and the two read endpoints of
// Jaeger's query API the test uses on 16686 (GET /api/services, GET /api/traces?service=).
import { createServer } from "node:http";
import { startOtlpReceiver } from "@trias/testing";

const otlp = await startOtlpReceiver({ host: "0.0.0.0", port: 4318 });

createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://x");
  const spans = otlp.spans();
  let data;
  if (url.pathname === "/api/services") {
    data = [...new Set(spans.map((s) => s.serviceName))].sort();
  } else if (url.pathname === "/api/traces") {
    const service = url.searchParams.get("service");
    const ids = new Set(spans.filter((s) => s.serviceName === service).map((s) => s.traceId));
    data = [...ids].map((traceID) => ({
      traceID,
      spans: otlp.trace(traceID).map((s) => ({
        traceID,
        spanID: s.spanId,
        operationName: s.name,
        serviceName: s.serviceName,
      })),
    }));
  } else {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ data }));
}).listen(16686, "0.0.0.0");
console.log("jaeger stand-in: OTLP/HTTP on 4318, query API on 16686");
