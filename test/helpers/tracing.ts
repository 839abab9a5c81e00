import { initTelemetry, type Telemetry } from "@trias/telemetry";
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from "@trias/testing";
import { startHarness, type Harness, type HarnessOptions } from "./harness.js";

/** A stack whose every process, this one (as the console) included, exports to one OTLP receiver. */
export interface TracedStack {
  rx: OtlpReceiver;
  h: Harness;
  telemetry: Telemetry;
  close(): Promise<void>;
}

/**
 * A real OTLP receiver on loopback, this process exporting to it as the console, and a stack
 * whose agents (and the CLI processes a test starts, which inherit the environment) do too.
 */
export async function startTracedStack(o: HarnessOptions = {}): Promise<TracedStack> {
  const rx = await startOtlpReceiver();
  const env = rx.exporterEnv();
  Object.assign(process.env, env);
  const telemetry = await initTelemetry({
    serviceName: "trias-console",
    agentName: "console",
    role: "console",
  });
  const h = await startHarness({ ...o, env: { ...env, ...(o.env ?? {}) } });
  return {
    rx,
    h,
    telemetry,
    close: async () => {
      await telemetry.shutdown();
      await h.close();
      await rx.close();
    },
  };
}

/** From a span up to its trace's root, as `service:name`, root first. */
export function spanChain(all: readonly ReceivedSpan[], leaf: ReceivedSpan): string[] {
  const byId = new Map(all.map((x) => [x.spanId, x]));
  const out: string[] = [];
  for (
    let x: ReceivedSpan | undefined = leaf;
    x;
    x = x.parentSpanId ? byId.get(x.parentSpanId) : undefined
  )
    out.unshift(`${x.serviceName}:${x.name}`);
  return out;
}
