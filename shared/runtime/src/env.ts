// Every agent process's configuration, in one place: the environment variables it reads
// (AgentEnvSchema, each with its default) and the defaults of the host's options. An agent's
// own variables extend this schema beside its main.ts (the reviewer's, for one).
import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import {
  ValidationError,
  envPositiveInt,
  envText,
  readEnv,
  type Env,
  type Role,
} from "@trias/protocol";
import {
  REGISTRY_FILE,
  keyFileName,
  natsCredentialsFileName,
  readNatsCredentials,
} from "@trias/signing";
import { SHIPPED_POLICY_DIR } from "@trias/policy/paths";
import { DEFAULT_ACK_WAIT_MS, MAX_REPLICAS } from "@trias/bus";
import { DEFAULT_LEASE_MS } from "./leases.js";

/** @default "nats://127.0.0.1:4222" (NATS_URL) */
export const DEFAULT_NATS_URL = "nats://127.0.0.1:4222";
/** @default ".trias/keys", relative to the working directory (TRIAS_KEY_DIR) */
export const DEFAULT_KEY_DIR = ".trias/keys";
/** @default "dev" (TRIAS_ENV): the policy is deploy/policies/<env>.yaml */
export const DEFAULT_ENVIRONMENT = "dev";
/** @default "info" (LOG_LEVEL) */
export const DEFAULT_LOG_LEVEL = "info";
/**
 * How long a delivery may go without a sign of life before the server redelivers it: the
 * takeover time after a crash. Declared, with why it is 3 s, in @trias/bus.
 * @default 3_000 ms (TRIAS_ACK_WAIT_MS; HostOptions.ackWaitMs)
 */
export { DEFAULT_ACK_WAIT_MS };
/**
 * Tolerated clock difference between agents: a message issued further in the future than
 * this is refused, and one expired less than this ago still counts (docs/design.md,
 * invariant 4).
 * @default 5_000 ms (HostOptions.clockSkewMs)
 */
export const DEFAULT_CLOCK_SKEW_MS = 5_000;
/**
 * How long a message the host signs stays valid (its expiresAt), unless the sender sets
 * another lifetime.
 * @default 300_000 ms, five minutes (HostOptions.defaultTtlMs)
 */
export const DEFAULT_MESSAGE_TTL_MS = 5 * 60_000;

/** The environment variables every agent reads. Unset or empty means the default. */
export const AgentEnvSchema = z.object({
  /** Identity name, e.g. "reviewer-2": selects the key file and the durable consumer. @default the role */
  TRIAS_IDENTITY: envText,
  /** Directory of key files and the registry. @default DEFAULT_KEY_DIR */
  TRIAS_KEY_DIR: envText,
  /** This identity's private key file. @default <TRIAS_KEY_DIR>/<identity>.key.json */
  TRIAS_KEY_FILE: envText,
  /** The public key registry (JWKS). @default <TRIAS_KEY_DIR>/registry.jwks.json */
  TRIAS_REGISTRY: envText,
  /** Environment name, choosing the policy file. @default DEFAULT_ENVIRONMENT */
  TRIAS_ENV: envText,
  /** Policy file, overriding TRIAS_ENV's. @default <TRIAS_POLICY_DIR>/<TRIAS_ENV>.yaml */
  TRIAS_POLICY: envText,
  /** Directory of per-environment policies. @default the shipped deploy/policies */
  TRIAS_POLICY_DIR: envText,
  /** @default DEFAULT_NATS_URL */
  NATS_URL: envText,
  /**
   * NATS user of this identity (deploy/nats/nats.conf).
   * @default the identity's credentials file beside its key (<TRIAS_KEY_DIR>/<identity>.nats.json), else none
   */
  NATS_USER: envText,
  /** @default none */
  NATS_PASSWORD: envText,
  /** pino level: trace, debug, info, warn, error, fatal, silent. @default DEFAULT_LOG_LEVEL */
  LOG_LEVEL: envText,
  /** @default DEFAULT_ACK_WAIT_MS */
  TRIAS_ACK_WAIT_MS: envPositiveInt(DEFAULT_ACK_WAIT_MS, "milliseconds"),
  /** A file kept while connected to NATS, for a container healthcheck (docs/containers.md). @default none */
  TRIAS_HEALTH_FILE: envText,
  /**
   * Which replica of this identity the process is, 1 to MAX_REPLICAS: replicas share the
   * identity's work by run partition (docs/scaling.md, section 2). @default 1
   */
  TRIAS_REPLICA: envPositiveInt(1, "a replica number").pipe(
    z.number().max(MAX_REPLICAS, `must be at most ${MAX_REPLICAS} (MAX_REPLICAS)`),
  ),
  /** How long a replica's partition leases last without renewal (the failover time). @default DEFAULT_LEASE_MS */
  TRIAS_LEASE_MS: envPositiveInt(DEFAULT_LEASE_MS, "milliseconds"),
});

/** Everything an agent process needs from its environment, read once in main.ts. */
export interface AgentEnv {
  /** Identity name, e.g. "reviewer-2": selects the key file and the durable consumer. */
  name: string;
  role: Role;
  natsUrl: string;
  natsUser?: string;
  natsPass?: string;
  keyFile: string;
  registryFile: string;
  environment: string;
  policyFile: string;
  logLevel: string;
  /** How long a delivery may go without a sign of life before redelivery (the takeover time). */
  ackWaitMs: number;
  /** TRIAS_HEALTH_FILE: kept present while connected to NATS (a container healthcheck). */
  healthFile?: string;
  /** TRIAS_REPLICA, as the replica id ("1", "2", ...). */
  replica: string;
  /** TRIAS_LEASE_MS. */
  leaseMs: number;
}

/**
 * Read and check an agent's environment: a wrong value, or a key file or registry that does
 * not exist, throws a `config_invalid` ValidationError that names the variable and the fix.
 */
export function readAgentEnv(role: Role, env: Env = process.env): AgentEnv {
  const e = readEnv(AgentEnvSchema, env);
  const name = e.TRIAS_IDENTITY ?? role;
  const keyDir = abs(e.TRIAS_KEY_DIR ?? DEFAULT_KEY_DIR);
  const environment = e.TRIAS_ENV ?? DEFAULT_ENVIRONMENT;
  const policyFile = abs(
    e.TRIAS_POLICY ?? join(e.TRIAS_POLICY_DIR ?? SHIPPED_POLICY_DIR, `${environment}.yaml`),
  );
  const keyFile = abs(e.TRIAS_KEY_FILE ?? join(keyDir, keyFileName(name)));
  const registryFile = abs(e.TRIAS_REGISTRY ?? join(keyDir, REGISTRY_FILE));
  for (const [what, path, hint] of [
    ["key file", keyFile, "create keys with `trias keys init <dir>` and set TRIAS_KEY_DIR"],
    ["key registry", registryFile, "set TRIAS_REGISTRY or TRIAS_KEY_DIR"],
  ] as const) {
    if (!existsSync(path))
      throw new ValidationError("config_invalid", `${what} ${path} does not exist: ${hint}`);
  }
  const out: AgentEnv = {
    name,
    role,
    natsUrl: e.NATS_URL ?? DEFAULT_NATS_URL,
    keyFile,
    registryFile,
    environment,
    policyFile,
    logLevel: e.LOG_LEVEL ?? DEFAULT_LOG_LEVEL,
    ackWaitMs: e.TRIAS_ACK_WAIT_MS,
    replica: String(e.TRIAS_REPLICA),
    leaseMs: e.TRIAS_LEASE_MS,
  };
  if (e.TRIAS_HEALTH_FILE !== undefined) out.healthFile = abs(e.TRIAS_HEALTH_FILE);
  // Without NATS_USER, the identity's own credentials beside its key (`trias keys init`).
  const credsFile = join(keyDir, natsCredentialsFileName(name));
  if (e.NATS_USER === undefined && existsSync(credsFile)) {
    const creds = readNatsCredentials(credsFile);
    out.natsUser = creds.user;
    out.natsPass = creds.password;
    return out;
  }
  if (e.NATS_USER !== undefined) out.natsUser = e.NATS_USER;
  if (e.NATS_PASSWORD !== undefined) out.natsPass = e.NATS_PASSWORD;
  return out;
}

function abs(p: string): string {
  return isAbsolute(p) ? p : resolve(process.cwd(), p);
}
