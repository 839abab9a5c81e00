import { existsSync } from "node:fs";
import { join } from "node:path";
import { Bus } from "@trias/bus";
import { ValidationError } from "@trias/protocol";
import {
  KeyRegistry,
  REGISTRY_FILE,
  Signer,
  keyFileName,
  natsCredentialsFileName,
  readNatsCredentials,
} from "@trias/signing";
import { DEFAULT_KEY_DIR } from "./demo.js";

/**
 * What an operator command needs: a bus (NATS_URL) and the key registry (TRIAS_KEY_DIR). The
 * bus connects as `as`, the identity the command acts as (the console; a human deciding; the
 * admin only for `trias setup`): with NATS_USER and NATS_PASSWORD when set, else with the
 * identity's own credentials beside its key.
 */
export async function connectOperator(as = "console"): Promise<{
  bus: Bus;
  registry: KeyRegistry;
  keyDir: string;
}> {
  const url = process.env["NATS_URL"];
  if (!url) {
    throw new ValidationError(
      "config_invalid",
      "NATS_URL is not set: point it at the server the agents use (the demo's embedded server stops when the demo ends; audit a saved trace with `trias audit --file <trace>` instead)",
    );
  }
  const keyDir = operatorKeyDir();
  const registry = loadRegistry(keyDir);
  const bus = await Bus.connect({
    servers: url,
    name: `trias-cli-${as}`,
    ...natsCredentialsOf(keyDir, as),
    connectTimeoutMs: 5_000,
  });
  return { bus, registry, keyDir };
}

/** Where the operator's keys (and NATS credentials) are: TRIAS_KEY_DIR, else the default. */
export function operatorKeyDir(): string {
  return process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR;
}

export function loadRegistry(
  keyDir = process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR,
): KeyRegistry {
  const path = join(keyDir, REGISTRY_FILE);
  if (!existsSync(path))
    throw new ValidationError(
      "config_invalid",
      `no key registry at ${path}: set TRIAS_KEY_DIR, or create keys with \`trias keys init <dir>\``,
    );
  return KeyRegistry.load(path);
}

export function loadSigner(keyDir: string, name: string): Signer {
  const path = join(keyDir, keyFileName(name));
  if (!existsSync(path))
    throw new ValidationError("config_invalid", `no key for identity "${name}" at ${path}`);
  return Signer.load(path);
}

/** NATS_USER/NATS_PASSWORD when set, else `name`'s credentials file in the key dir, else none. */
export function natsCredentialsOf(keyDir: string, name: string): { user?: string; pass?: string } {
  const user = process.env["NATS_USER"];
  if (user)
    return {
      user,
      ...(process.env["NATS_PASSWORD"] ? { pass: process.env["NATS_PASSWORD"] } : {}),
    };
  const file = join(keyDir, natsCredentialsFileName(name));
  if (!existsSync(file)) return {};
  const c = readNatsCredentials(file);
  return { user: c.user, pass: c.password };
}
