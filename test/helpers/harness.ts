import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bus, ConsumerInfo, StoredMessage } from "@trias/bus";
import { Stack, type AgentSpec, ConsoleClient, type StackOptions } from "@trias/console";
import {
  PROTOCOL_VERSION,
  decode,
  decodeFrame,
  proposalDigest,
  subjectFor,
  subjectOf,
  type BodyOf,
  type Kind,
  type Role,
  type MessageOf,
  type ReviewRequirement,
  type Tier,
} from "@trias/protocol";
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
  agents?: AgentSpec[];
  environment?: string;
  policyFile?: string;
  /** Extra identities to create before the agents load the registry. */
  extraIdentities?: Identity[];
  /** Identities revoked before the agents start. */
  revoked?: string[];
  env?: Record<string, string>;
  /** The server to start instead of the shared test server (e.g. one whose store dir a test reads). */
  natsFactory?: StackOptions["natsFactory"];
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

/** Builds and publishes signed messages as any identity: the adversary's (and the test's) hand. */
export class Forge {
  readonly #bus: Bus;
  readonly #signer: (name: string) => Signer;
  constructor(bus: Bus, signer: (name: string) => Signer) {
    this.#bus = bus;
    this.#signer = signer;
  }

  envelope<K extends Kind>(
    as: string,
    kind: K,
    f: {
      run: string;
      step: number | null;
      attempt?: number;
      body: BodyOf<K>;
      issuedAt?: number;
      ttlMs?: number;
      id?: string;
      role?: string;
    },
  ): MessageOf<K> {
    const s = this.#signer(as);
    const issuedAt = f.issuedAt ?? Date.now();
    return {
      v: PROTOCOL_VERSION,
      id: f.id ?? `forge-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`,
      kind,
      run: f.run,
      step: f.step,
      attempt: f.attempt ?? 0,
      sender: s.kid,
      role: f.role ?? s.role,
      issuedAt,
      expiresAt: issuedAt + (f.ttlMs ?? 60_000),
      trace: null,
      body: f.body,
    } as MessageOf<K>;
  }

  seal(as: string, m: MessageOf<Kind>): Uint8Array {
    return this.#signer(as).seal(m);
  }

  async publish(subject: string, bytes: Uint8Array, msgId?: string): Promise<number> {
    const r = await this.#bus.publish(subject, bytes, {
      msgId: msgId ?? `raw-${Math.random().toString(36).slice(2)}`,
    });
    return r.seq;
  }

  proposal(
    run: string,
    o: {
      step?: number;
      attempt?: number;
      tool?: string;
      args?: Record<string, unknown>;
      index?: number;
      total?: number;
    } = {},
  ): { bytes: Uint8Array; message: MessageOf<"step_proposed"> } {
    const message = this.envelope("proposer", "step_proposed", {
      run,
      step: o.step ?? 0,
      attempt: o.attempt ?? 0,
      body: {
        tool: o.tool ?? "ledger.transfer",
        args: (o.args ?? { from: "alice", to: "bob", amount: 5 }) as never,
        rationale: "test",
        expected: "test",
        index: o.index ?? o.step ?? 0,
        total: o.total ?? 1,
        replanOf: null,
        usage: null,
      },
    });
    return { bytes: this.seal("proposer", message), message };
  }

  assignment(
    proposal: { bytes: Uint8Array; message: MessageOf<"step_proposed"> },
    policyDigest: string,
    tier: Tier,
    requires: ReviewRequirement,
    o: { as?: string; issuedAt?: number; ttlMs?: number; role?: string; digest?: string } = {},
  ): { bytes: Uint8Array; message: MessageOf<"tier_assigned"> } {
    const p = proposal.message;
    const digest =
      o.digest ??
      proposalDigest({
        tool: p.body.tool,
        args: p.body.args,
        run: p.run,
        step: p.step ?? 0,
        attempt: p.attempt,
        policyDigest,
      });
    const message = this.envelope(o.as ?? "router", "tier_assigned", {
      run: p.run,
      step: p.step,
      attempt: p.attempt,
      ...(o.issuedAt !== undefined ? { issuedAt: o.issuedAt } : {}),
      ...(o.ttlMs !== undefined ? { ttlMs: o.ttlMs } : {}),
      ...(o.role ? { role: o.role } : {}),
      body: {
        proposal: proposal.bytes,
        digest,
        policyDigest,
        environment: "test",
        tier,
        score: 0,
        explanation: ["forged by test"],
        requires,
        escalatedFrom: null,
        denied: null,
      },
    });
    return { bytes: this.seal(o.as ?? "router", message), message };
  }

  verdict(
    assignment: { bytes: Uint8Array; message: MessageOf<"tier_assigned"> },
    as: string,
    o: {
      decision?: "approve" | "reject";
      digest?: string;
      strategy?: "rules" | "human";
      id?: string;
    } = {},
  ): { bytes: Uint8Array; message: MessageOf<"verdict"> } {
    const a = assignment.message;
    const message = this.envelope(as, "verdict", {
      run: a.run,
      step: a.step,
      attempt: a.attempt,
      ...(o.id ? { id: o.id } : {}),
      body: {
        digest: o.digest ?? a.body.digest,
        assignment: assignment.bytes,
        decision: o.decision ?? "approve",
        strategy: o.strategy ?? "rules",
        reasons: ["test"],
      },
    });
    return { bytes: this.seal(as, message), message };
  }

  async send(
    role: "router" | "reviewer" | "human" | "proposer" | "console",
    kind: Kind,
    run: string,
    bytes: Uint8Array,
    msgId?: string,
  ): Promise<number> {
    return this.publish(this.#subject(role, kind, run, bytes), bytes, msgId);
  }

  /** Where the real sender would publish these bytes (an assignment asking for review has its own token). */
  #subject(role: Role, kind: Kind, run: string, bytes: Uint8Array): string {
    try {
      const m = decode(decodeFrame(bytes).payload) as { kind?: unknown; body?: unknown };
      if (m.kind === kind && kind === "tier_assigned")
        return subjectOf(role, kind, run, m.body as BodyOf<"tier_assigned">);
    } catch {
      // Not a frame (the test sends garbage on purpose): the kind's own subject.
    }
    return subjectFor(role, kind, run);
  }
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
