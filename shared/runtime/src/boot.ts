import { Bus, KeySwap, LEASES_BUCKET, isNotFound } from "@trias/bus";
import { ValidationError, type Role } from "@trias/protocol";
import { watchFile } from "node:fs";
import { KeyRegistry, Signer, readJwks } from "@trias/signing";
import { DEFAULT_LOG_LEVEL, readAgentEnv, type AgentEnv } from "./env.js";
import { keepHealthFile } from "./health.js";
import { AgentHost, type Logger } from "./host.js";
import {
  createLogger as createTelemetryLogger,
  initTelemetry,
  type Telemetry,
} from "@trias/telemetry";

export interface Booted {
  env: AgentEnv;
  host: AgentHost;
  bus: Bus;
  log: Logger;
  telemetry: Telemetry;
}

export function createLogger(
  name: string,
  role: Role,
  level = process.env["LOG_LEVEL"] || DEFAULT_LOG_LEVEL,
): Logger {
  return createTelemetryLogger({ agent: name, role, level });
}

/** Read config, load keys, connect, wait for the trace stream. Used by each agent's main.ts. */
export async function bootAgent(role: Role, opts: { logger?: Logger } = {}): Promise<Booted> {
  const env = readAgentEnv(role);
  // Telemetry first, so the logger's lines carry the ids of the spans that follow.
  const telemetry = await initTelemetry({
    serviceName: `trias-${role}`,
    agentName: env.name,
    role,
  });
  const log = opts.logger ?? createLogger(env.name, role, env.logLevel);
  const signer = Signer.load(env.keyFile);
  if (signer.role !== role) {
    throw new ValidationError(
      "config_invalid",
      `key file ${env.keyFile} is for a ${signer.role}, but this process is the ${role}`,
    );
  }
  const registry = KeyRegistry.load(env.registryFile);
  const bus = await Bus.connect({
    servers: env.natsUrl,
    name: env.name,
    ...(env.natsUser !== undefined ? { user: env.natsUser } : {}),
    ...(env.natsPass !== undefined ? { pass: env.natsPass } : {}),
  });
  await bus.waitForStream();
  if (env.healthFile !== undefined) keepHealthFile(bus, env.healthFile);
  // A revocation (trias keys revoke) takes effect without a restart.
  watchFile(env.registryFile, { interval: 1000, persistent: false }, () => {
    try {
      registry.replaceKeys(readJwks(env.registryFile));
      log.info({ registry: env.registryFile }, "key registry reloaded");
    } catch (e) {
      log.error(
        { err: (e as Error).message },
        "key registry change refused; keeping the previous keys",
      );
    }
  });
  const host = new AgentHost({
    name: env.name,
    bus,
    signer,
    registry,
    log,
    ackWaitMs: env.ackWaitMs,
  });
  await usePartitions(host, bus, env, log);
  return { env, host, bus, log, telemetry };
}

/**
 * Share the identity's work with its other replicas by run partition (docs/scaling.md,
 * section 2). A trace set up before the leases bucket existed runs the first replica alone,
 * as before; a second replica there is refused with what to do.
 */
async function usePartitions(host: AgentHost, bus: Bus, env: AgentEnv, log: Logger): Promise<void> {
  let kv;
  try {
    kv = await bus.kv(LEASES_BUCKET);
  } catch (e) {
    if (!isNotFound(e)) throw e;
    if (env.replica !== "1")
      throw new ValidationError(
        "config_invalid",
        `replica ${env.replica} needs the ${LEASES_BUCKET} bucket, which this trace lacks: run \`trias setup\` (it adds the missing buckets) and start the replicas again`,
        { cause: e },
      );
    log.warn(
      { bucket: LEASES_BUCKET },
      "no partition leases bucket (a trace set up by an older `trias setup`): running as the only replica",
    );
    return;
  }
  await host.usePartitions({
    kv: await KeySwap.open(kv, bus.serverVersion),
    replica: env.replica,
    leaseMs: env.leaseMs,
  });
}

/** Drain on SIGTERM/SIGINT: stop taking messages, finish in-flight ones, close, exit 0. */
export function drainOnSignal(
  b: Booted,
  extra: () => Promise<void> = () => Promise.resolve(),
): void {
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    b.log.info({ signal: sig }, "draining");
    void (async () => {
      await b.host.stop();
      await extra();
      await b.bus.drain();
      await b.telemetry.shutdown();
      process.exit(0);
    })();
  };
  process.once("SIGTERM", () => stop("SIGTERM"));
  process.once("SIGINT", () => stop("SIGINT"));
}

/** Top-level guard for main.ts: print one clear line and exit non-zero on a startup failure. */
export function fatal(role: string, e: unknown): never {
  const msg = e instanceof Error ? e.message : String(e);
  process.stderr.write(`trias ${role}: ${msg}\n`);
  process.exit(1);
}
