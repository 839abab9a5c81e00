import { randomBytes } from "node:crypto";
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { calculateJwkThumbprint, exportJWK, generateKeyPair, type JWK } from "jose";
import { z } from "zod";
import { GroupName, Role, ValidationError } from "@trias/protocol";

/** One signing identity: a name an operator reads ("reviewer-2"), a role, an Ed25519 key. */
export interface Identity {
  name: string;
  role: Role;
}

export const PublicKeyEntry = z.object({
  kty: z.literal("OKP"),
  crv: z.literal("Ed25519"),
  x: z.string().min(1),
  kid: z.string().min(1),
  alg: z.literal("EdDSA").optional(),
  use: z.literal("sig").optional(),
  name: z.string().min(1),
  role: Role,
  status: z.enum(["active", "revoked"]),
  /** Groups a human key belongs to ("treasury"): what `require: human: {group, count}` counts. */
  groups: z.array(GroupName).optional(),
  /**
   * When the key took effect (ms since the epoch): a frame stored before it is not its
   * signature. Absent in registries written before keys had a time of effect: in effect
   * since always.
   */
  addedAt: z.number().int().nonnegative().optional(),
  /**
   * When the key was revoked (ms since the epoch): frames stored before it stay valid, so a
   * revocation never rewrites older runs' audits. A revoked key without it is revoked since
   * always (registries written before keys had a time of effect).
   */
  revokedAt: z.number().int().nonnegative().optional(),
});
export type PublicKeyEntry = z.infer<typeof PublicKeyEntry>;

export const Jwks = z.object({ keys: z.array(PublicKeyEntry) });
export type Jwks = z.infer<typeof Jwks>;

export const PrivateKeyFile = z.object({
  name: z.string().min(1),
  role: Role,
  kid: z.string().min(1),
  jwk: z.object({ kty: z.literal("OKP"), crv: z.literal("Ed25519"), x: z.string(), d: z.string() }),
});
export type PrivateKeyFile = z.infer<typeof PrivateKeyFile>;

export const REGISTRY_FILE = "registry.jwks.json";
export function keyFileName(name: string): string {
  return `${name}.key.json`;
}

/**
 * An identity's NATS user and password, kept beside its key: each identity connects as
 * itself, with the permissions of its role (docs/security.md, NATS credentials).
 */
export const NatsCredentials = z.object({ user: z.string().min(1), password: z.string().min(16) });
export type NatsCredentials = z.infer<typeof NatsCredentials>;

export function natsCredentialsFileName(name: string): string {
  return `${name}.nats.json`;
}

/** The NATS user that sets up the trace; a name no identity may take. */
export const ADMIN_NATS_USER = "admin";

/** Random bytes in a generated NATS password (hex-encoded: safe in a config and an env file). */
const NATS_PASSWORD_BYTES = 18;

/** The identities a default deployment runs with: one per agent, two reviewers, a console, a human. */
export const DEFAULT_IDENTITIES: readonly Identity[] = [
  { name: "proposer", role: "proposer" },
  { name: "router", role: "router" },
  { name: "reviewer-1", role: "reviewer" },
  { name: "reviewer-2", role: "reviewer" },
  { name: "reviewer-3", role: "reviewer" },
  { name: "executor", role: "executor" },
  { name: "verifier", role: "verifier" },
  { name: "console", role: "console" },
  { name: "human-operator", role: "human" },
];

function checkIdentityName(name: string): void {
  if (name === ADMIN_NATS_USER) {
    throw new ValidationError(
      "config_invalid",
      `identity name "${name}" is reserved for the NATS user that sets up the trace: choose another name`,
    );
  }
  if (!/^[a-z0-9][a-z0-9-]{0,62}$/.test(name)) {
    throw new ValidationError(
      "config_invalid",
      `identity name "${name}" must be lowercase letters, digits and '-', starting with a letter or digit`,
    );
  }
}

export async function generateIdentity(
  id: Identity,
  now: number = Date.now(),
): Promise<{ priv: PrivateKeyFile; pub: PublicKeyEntry }> {
  checkIdentityName(id.name);
  const { privateKey, publicKey } = await generateKeyPair("EdDSA", {
    crv: "Ed25519",
    extractable: true,
  });
  const pubJwk: JWK = await exportJWK(publicKey);
  const privJwk: JWK = await exportJWK(privateKey);
  const kid = `${id.name}:${(await calculateJwkThumbprint(pubJwk)).slice(0, 16)}`;
  const x = pubJwk.x ?? "";
  const d = privJwk.d ?? "";
  return {
    priv: { name: id.name, role: id.role, kid, jwk: { kty: "OKP", crv: "Ed25519", x, d } },
    pub: {
      kty: "OKP",
      crv: "Ed25519",
      x,
      kid,
      alg: "EdDSA",
      use: "sig",
      name: id.name,
      role: id.role,
      status: "active",
      addedAt: now,
    },
  };
}

export interface InitKeysResult {
  dir: string;
  created: string[];
  kept: string[];
}

/**
 * Write one private key file per identity (mode 0600) and the public registry, and beside
 * each key the identity's NATS credentials (plus the admin's). Existing keys and credentials
 * are kept, never overwritten, so re-running is safe; new identities are appended.
 */
export async function initKeyDir(
  dir: string,
  identities: readonly Identity[] = DEFAULT_IDENTITIES,
): Promise<InitKeysResult> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const registryPath = join(dir, REGISTRY_FILE);
  const registry: Jwks = existsSync(registryPath) ? readJwks(registryPath) : { keys: [] };
  const created: string[] = [];
  const kept: string[] = [];
  for (const id of identities) {
    const file = join(dir, keyFileName(id.name));
    if (existsSync(file)) {
      kept.push(id.name);
      continue;
    }
    const { priv, pub } = await generateIdentity(id);
    writeFileSync(file, JSON.stringify(priv, null, 2) + "\n", { mode: 0o600 });
    chmodSync(file, 0o600);
    registry.keys = registry.keys.filter((k) => k.name !== id.name || k.status === "revoked");
    registry.keys.push(pub);
    created.push(id.name);
  }
  writeFileSync(registryPath, JSON.stringify(registry, null, 2) + "\n", { mode: 0o644 });
  for (const name of [ADMIN_NATS_USER, ...identities.map((i) => i.name)])
    writeNatsCredentials(dir, name);
  return { dir, created, kept };
}

/**
 * An identity's NATS user and password, beside its key (`<name>.nats.json`, mode 0600).
 * An existing file is kept, never overwritten. Returns the file.
 */
function writeNatsCredentials(dir: string, name: string): string {
  const file = join(dir, natsCredentialsFileName(name));
  if (existsSync(file)) return file;
  const creds: NatsCredentials = {
    user: name,
    // A letter first: nats-server reads an unquoted value that starts with a digit as a number.
    password: `p${randomBytes(NATS_PASSWORD_BYTES).toString("hex")}`,
  };
  writeFileSync(file, JSON.stringify(creds, null, 2) + "\n", { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** Read and validate one JSON key file; the error says which file, what is wrong, what to do. */
function readJsonFile<S extends z.ZodType>(
  path: string,
  schema: S,
  what: string,
  hint = "",
): z.infer<S> {
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, "utf8"));
  } catch (e) {
    throw new ValidationError(
      "config_invalid",
      `cannot read ${what} ${path}: ${(e as Error).message}${hint}`,
      { cause: e },
    );
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw new ValidationError(
      "config_invalid",
      `${what} ${path} is invalid: ${z.prettifyError(r.error)}`,
      { cause: r.error },
    );
  }
  return r.data;
}

export function readJwks(path: string): Jwks {
  return readJsonFile(path, Jwks, "key registry");
}

export function readPrivateKeyFile(path: string): PrivateKeyFile {
  return readJsonFile(
    path,
    PrivateKeyFile,
    "key file",
    ". Create keys with: trias keys init <dir>",
  );
}

export function readNatsCredentials(path: string): NatsCredentials {
  return readJsonFile(
    path,
    NatsCredentials,
    "NATS credentials",
    ". Create them with: trias keys init <dir>",
  );
}

/**
 * Mark a key revoked in the registry file, as of `at` (default now): agents refuse its
 * messages from their next load, and an audit refuses its frames stored from `at` on while
 * those stored before stay valid (docs/receipts.md, "Keys and their time of effect").
 */
export function revokeKey(dir: string, nameOrKid: string, at: number = Date.now()): PublicKeyEntry {
  const path = join(dir, REGISTRY_FILE);
  const jwks = readJwks(path);
  const entry = jwks.keys.find(
    (k) => k.kid === nameOrKid || (k.name === nameOrKid && k.status === "active"),
  );
  if (!entry)
    throw new ValidationError(
      "key_unknown",
      `no active key named or with id "${nameOrKid}" in ${path}`,
    );
  entry.status = "revoked";
  entry.revokedAt = at;
  writeFileSync(path, JSON.stringify(jwks, null, 2) + "\n");
  return entry;
}

/** A human identity in the registry: its name, key id and groups. */
export interface HumanIdentity {
  name: string;
  kid: string;
  groups: string[];
}

/**
 * Every active human identity in a registry. Whatever gives identities their own
 * credentials (a NATS user per identity) takes humans from here.
 */
export function humanIdentities(jwks: Jwks): HumanIdentity[] {
  return jwks.keys
    .filter((k) => k.role === "human" && k.status === "active")
    .map((k) => ({ name: k.name, kid: k.kid, groups: k.groups ?? [] }));
}

export interface AddHumanOptions {
  /** Groups the human belongs to. */
  groups: readonly string[];
  /**
   * The human's public key (JWK `x`, base64url), made where the private key lives (a
   * browser's non-extractable WebCrypto key, a hardware token): nothing secret is written.
   * Without it a key pair is made and the private key written to `privateKeyFile`.
   */
  publicX?: string;
  /** Where a generated private key goes (mode 0600); `<dir>/<name>.key.json` by default. */
  privateKeyFile?: string;
}

/**
 * Register a human identity: its own Ed25519 key and its groups, and its own NATS user
 * (`<name>.nats.json` beside the registry: role `human`, so it may publish human verdicts
 * and orders and read the trace, nothing else; nats-config.ts `permissionsOf`). A name
 * already active is refused (revoke it first), so a key is never silently replaced.
 */
export async function addHuman(
  dir: string,
  name: string,
  o: AddHumanOptions,
): Promise<{ entry: PublicKeyEntry; privateKeyFile: string | null; natsCredentialsFile: string }> {
  checkIdentityName(name);
  const path = join(dir, REGISTRY_FILE);
  const jwks: Jwks = existsSync(path) ? readJwks(path) : { keys: [] };
  if (jwks.keys.some((k) => k.name === name && k.status === "active"))
    throw new ValidationError(
      "config_invalid",
      `an active key named "${name}" is already in ${path}; revoke it first (trias keys revoke)`,
    );
  const groups = o.groups.map((g) => GroupName.parse(g));
  let entry: PublicKeyEntry;
  let privateKeyFile: string | null = null;
  if (o.publicX !== undefined) {
    const x = o.publicX;
    if (Buffer.from(x, "base64url").length !== 32)
      throw new ValidationError(
        "config_invalid",
        `the public key must be an Ed25519 key: 32 bytes, base64url (JWK "x"); got ${JSON.stringify(x.slice(0, 60))}`,
      );
    const kid = `${name}:${(await calculateJwkThumbprint({ kty: "OKP", crv: "Ed25519", x })).slice(0, 16)}`;
    entry = {
      kty: "OKP",
      crv: "Ed25519",
      x,
      kid,
      alg: "EdDSA",
      use: "sig",
      name,
      role: "human",
      status: "active",
      groups,
      addedAt: Date.now(),
    };
  } else {
    const { priv, pub } = await generateIdentity({ name, role: "human" });
    privateKeyFile = o.privateKeyFile ?? join(dir, keyFileName(name));
    writeFileSync(privateKeyFile, JSON.stringify(priv, null, 2) + "\n", { mode: 0o600 });
    chmodSync(privateKeyFile, 0o600);
    entry = { ...pub, groups };
  }
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  jwks.keys.push(entry);
  writeFileSync(path, JSON.stringify(jwks, null, 2) + "\n", { mode: 0o644 });
  return { entry, privateKeyFile, natsCredentialsFile: writeNatsCredentials(dir, name) };
}
