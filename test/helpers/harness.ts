import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bus, ConsumerInfo, NatsUser, StoredMessage } from "@trias/bus";
import { Stack, type AgentSpec, ConsoleClient, Forge, type NatsHandle } from "@trias/console";
import { frameRef, subjectFor, type Kind, type MessageOf } from "@trias/protocol";
import {
  DEFAULT_IDENTITIES,
  KeyRegistry,
  Signer,
  initKeyDir,
  keyFileName,
  revokeKey,
  type Identity,
  type Opened,
} from "@trias/signing";
import { parse, stringify } from "yaml";
import { SHIPPED_POLICY_DIR } from "@trias/policy";
import { startTestNats, waitFor } from "@trias/testing";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";

export { Forge };

export const REPO = join(import.meta.dirname, "..", "..");

export interface Harness {
  stack: Stack;
  bus: Bus;
  keyDir: string;
  registry: KeyRegistry;
  signer(name: string): Signer;
  client: ConsoleClient;
  ledger: Ledger;
  forge: Forge;
  /** Every message of a run, opened (signature-checked); unverifiable ones are skipped. */
  trace(run: string): Promise<Opened[]>;
  rejections(run: string, by?: string): Promise<MessageOf<"message_rejected">[]>;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** See StackOptions.readyTimeoutMs. */
  readyTimeoutMs?: number;
  agents?: AgentSpec[];
  environment?: string;
  policyFile?: string;
  /** Extra identities to create before the agents load the registry. */
  extraIdentities?: Identity[];
  /** Identities revoked before the agents start. */
  revoked?: string[];
  env?: Record<string, string>;
  /** Start the server this way (a test that stops the process itself); startTestNats by default. */
  natsFactory?: (users: readonly NatsUser[]) => Promise<NatsHandle>;
}

export async function startHarness(o: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), "trias-test-"));
  const keyDir = join(dir, "keys");
  await initKeyDir(keyDir, [...DEFAULT_IDENTITIES, ...(o.extraIdentities ?? [])]);
  for (const r of o.revoked ?? []) revokeKey(keyDir, r);
  const stack = await Stack.start({
    keyDir,
    logDir: join(dir, "logs"),
    environment: o.environment ?? "dev",
    ...(o.policyFile ? { policyFile: o.policyFile } : {}),
    ...(o.agents ? { agents: o.agents } : {}),
    ...(o.env ? { env: o.env } : {}),
    natsFactory: o.natsFactory ?? ((users) => startTestNats(users)),
    ...(o.readyTimeoutMs !== undefined ? { readyTimeoutMs: o.readyTimeoutMs } : {}),
  });
  const registry = KeyRegistry.load(stack.registryFile);
  const signers = new Map<string, Signer>();
  const signer = (name: string) => {
    let s = signers.get(name);
    if (!s) {
      s = Signer.load(join(keyDir, keyFileName(name)));
      signers.set(name, s);
    }
    return s;
  };
  const client = new ConsoleClient(stack.admin, signer("console"), registry);
  const ledger = new Ledger(await stack.admin.kv(LEDGER_BUCKET));
  const trace = async (run: string) => {
    const out: Opened[] = [];
    for (const m of await stack.admin.readAll(`trias.*.*.${run}`)) {
      try {
        out.push(registry.open(m.data));
      } catch {
        // unverifiable messages are what the agents refused
      }
    }
    return out;
  };
  return {
    stack,
    bus: stack.admin,
    keyDir,
    registry,
    signer,
    client,
    ledger,
    forge: new Forge(stack.admin, signer),
    trace,
    rejections: async (run, by) =>
      (await trace(run))
        .map((o) => o.message)
        .filter(
          (m): m is MessageOf<"message_rejected"> =>
            m.kind === "message_rejected" && (by === undefined || m.body.by === by),
        ),
    close: async () => {
      await stack.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

let counter = 0;
export function uniqueRun(prefix = "t"): string {
  return `${prefix}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
}

/** The built `trias` CLI. */
export const CLI = join(REPO, "agents", "console", "dist", "cli.js");

/**
 * Run the `trias` CLI as its own process against a harness's stack, with admin's NATS
 * credentials and the stack's key directory (commands that sign pick their key by --as).
 */
export function cliAsAdmin(h: Harness, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: cliEnv(h), encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

/**
 * Run the `trias` CLI as a person would: no NATS_USER, so a command that signs as `--as
 * <name>` connects with that identity's own NATS user (its credentials file in the key dir).
 */
export function cliAsPerson(h: Harness, args: string[]): { code: number | null; out: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { env: personEnv(h), encoding: "utf8" });
  return { code: r.status, out: r.stdout + r.stderr };
}

/** cliAsPerson without blocking this process. */
export function cliAsPersonAsync(
  h: Harness,
  args: string[],
): Promise<{ code: number | null; out: string }> {
  return cliAsync(personEnv(h), args);
}

function personEnv(h: Harness): NodeJS.ProcessEnv {
  const env = cliEnv(h);
  delete env["NATS_USER"];
  delete env["NATS_PASSWORD"];
  return env;
}

/**
 * cliAsAdmin without blocking this process: for a test that serves something the CLI
 * talks to from this process (an OTLP receiver the CLI exports its spans to).
 */
export function cliAsAdminAsync(
  h: Harness,
  args: string[],
): Promise<{ code: number | null; out: string }> {
  return cliAsync(cliEnv(h), args);
}

async function cliAsync(
  env: NodeJS.ProcessEnv,
  args: string[],
): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [CLI, ...args], { env });
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
  child.stderr.on("data", (d: Buffer) => (out += d.toString("utf8")));
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (c) => resolve(c));
  });
  return { code, out };
}

/** The environment `cliAsAdmin` runs the CLI in: the stack's server, admin's user, its key dir. */
export function cliEnv(h: Harness): NodeJS.ProcessEnv {
  const admin = h.stack.natsCredentials("admin");
  return {
    ...process.env,
    NATS_URL: h.stack.natsUrl,
    NATS_USER: admin.user ?? "",
    NATS_PASSWORD: admin.pass ?? "",
    TRIAS_KEY_DIR: h.keyDir,
  };
}

export async function waitForRejection(
  h: Harness,
  run: string,
  by: string,
  code: string,
  timeoutMs = 20_000,
): Promise<MessageOf<"message_rejected">> {
  return waitFor(
    `a ${code} rejection by ${by} in ${run}`,
    async () => (await h.rejections(run, by)).find((r) => r.body.code === code),
    timeoutMs,
  );
}

export async function waitForKind<K extends Kind>(
  h: Harness,
  run: string,
  kind: K,
  timeoutMs = 20_000,
  pred: (m: MessageOf<K>) => boolean = () => true,
): Promise<MessageOf<K>> {
  return waitFor(
    `${kind} in ${run}`,
    async () =>
      (await h.trace(run))
        .map((o) => o.message)
        .find((m): m is MessageOf<K> => m.kind === kind && pred(m as MessageOf<K>)),
    timeoutMs,
  );
}

/** A durable's state on the server; fails when it does not exist. */
export async function consumerOf(h: Harness, durable: string): Promise<ConsumerInfo> {
  const info = await h.bus.consumerInfo(durable);
  if (!info) throw new Error(`durable ${durable} does not exist`);
  return info;
}

export async function executions(h: Harness, run: string): Promise<StoredMessage[]> {
  return h.bus.readAll(subjectFor("executor", "step_executed", run));
}

/**
 * The names of the keys whose verdicts an execution counted: its evidence names them by
 * frameRef, and the frames are in the run's trace (docs/receipts.md, 3).
 */
export async function approversOf(h: Harness, exec: MessageOf<"step_executed">): Promise<string[]> {
  const byRef = new Map<string, string>();
  for (const s of await h.bus.readAll(`trias.*.verdict.${exec.run}`))
    byRef.set(frameRef(s.data), h.registry.open(s.data).key.name);
  return exec.body.evidence.approvals.map((ref) => byRef.get(ref) ?? `missing ${ref}`);
}

/** A shipped policy document as parsed YAML, to change before writing it back. */
export interface PolicyDocDraft {
  environment: string;
  tiers: Record<string, Record<string, unknown>>;
  [key: string]: unknown;
}

/**
 * A shipped policy (`dev`, `staging`, `prod`) changed for a test and written to a fresh
 * file under its own environment name; returns the file.
 */
export function policyVariant(
  base: "dev" | "staging" | "prod",
  environment: string,
  change: (doc: PolicyDocDraft) => void,
): string {
  const doc = parse(
    readFileSync(join(SHIPPED_POLICY_DIR, `${base}.yaml`), "utf8"),
  ) as PolicyDocDraft;
  doc.environment = environment;
  change(doc);
  const file = join(mkdtempSync(join(tmpdir(), "trias-policy-")), `${environment}.yaml`);
  writeFileSync(file, stringify(doc));
  return file;
}
