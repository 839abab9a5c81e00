import { existsSync } from "node:fs";
import { isAbsolute, join, resolve } from "node:path";
import { ValidationError, type Role } from "@trias/protocol";
import { REGISTRY_FILE, keyFileName } from "@trias/signing";
import { SHIPPED_POLICY_DIR } from "@trias/policy";
import { DEFAULT_ACK_WAIT_MS } from "@trias/bus";

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
  /**
   * How long a delivery may go without a sign of life before redelivery: the takeover time
   * after a crash (TRIAS_ACK_WAIT_MS).
   * @default DEFAULT_ACK_WAIT_MS (3 s, see @trias/bus)
   */
  ackWaitMs: number;
}

type Env = Record<string, string | undefined>;

export function readAgentEnv(role: Role, env: Env = process.env): AgentEnv {
  const name = env["TRIAS_IDENTITY"] ?? role;
  const keyDir = abs(env["TRIAS_KEY_DIR"] ?? ".trias/keys");
  const environment = env["TRIAS_ENV"] ?? "dev";
  const policyFile = abs(
    env["TRIAS_POLICY"] ??
      join(env["TRIAS_POLICY_DIR"] ?? SHIPPED_POLICY_DIR, `${environment}.yaml`),
  );
  const keyFile = abs(env["TRIAS_KEY_FILE"] ?? join(keyDir, keyFileName(name)));
  const registryFile = abs(env["TRIAS_REGISTRY"] ?? join(keyDir, REGISTRY_FILE));
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
    natsUrl: env["NATS_URL"] ?? "nats://127.0.0.1:4222",
    keyFile,
    registryFile,
    environment,
    policyFile,
    logLevel: env["LOG_LEVEL"] ?? "info",
    ackWaitMs: ackWait(env["TRIAS_ACK_WAIT_MS"]),
  };
  const user = env["NATS_USER"];
  const pass = env["NATS_PASSWORD"];
  if (user !== undefined) out.natsUser = user;
  if (pass !== undefined) out.natsPass = pass;
  return out;
}

/** Below this the in-progress signals (a third of the wait) would crowd the connection. */
const MIN_ACK_WAIT_MS = 300;

function ackWait(v: string | undefined): number {
  if (v === undefined || v === "") return DEFAULT_ACK_WAIT_MS;
  const n = Number(v);
  if (!Number.isInteger(n) || n < MIN_ACK_WAIT_MS)
    throw new ValidationError(
      "config_invalid",
      `TRIAS_ACK_WAIT_MS=${v} is not a whole number of milliseconds of at least ${MIN_ACK_WAIT_MS}: unset it for the default (${DEFAULT_ACK_WAIT_MS})`,
    );
  return n;
}

function abs(p: string): string {
  return isAbsolute(p) ? p : resolve(process.cwd(), p);
}
