import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Bus } from "@trias/bus";
import { loadPolicy } from "@trias/policy";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { onShutdown } from "@trias/supervise";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { stringify } from "yaml";
import { checkpointOf, readRun, type StoredEvent } from "../audit.js";
import { ConsoleClient } from "../client.js";
import { shippedPolicyDoc, withPackEntries } from "../pack-policy.js";
import { Stack, durablesOf } from "../stack.js";
import {
  ATTACKS,
  FAILING_VERDICTS,
  seededRandom,
  type Attack,
  type LabContext,
  type LabVerdict,
} from "./attacks.js";
import { Forge } from "./forge.js";

export interface LabOptions {
  /** Use this server (and start the agents on it) instead of an embedded one. */
  natsUrl?: string;
  /** Keys of the stack; a fresh temporary key set for an embedded stack when absent. */
  keyDir?: string;
  trials: number;
  seed: number;
  /** Only these attacks (names); every attack when empty. */
  only: readonly string[];
  timeoutMs: number;
  /** Review window of the lab's policy: how long a step missing a reviewer waits. */
  reviewTimeoutMs: number;
  log?: (line: string) => void;
}

export interface LabRow {
  trial: number;
  attack: string;
  invariants: number[];
  expected: string;
  verdict: LabVerdict;
  observed: string;
  runs: string[];
  ms: number;
}

export interface LabReport {
  ok: boolean;
  seed: number;
  trials: number;
  rows: LabRow[];
  /** Per attack: how many trials ended in each verdict. */
  summary: Record<string, Partial<Record<LabVerdict, number>>>;
  exitCode: number;
}

/** An attack name the lab does not know (a usage error). */
export function unknownAttacks(names: readonly string[]): string[] {
  const known = new Set(ATTACKS.map((a) => a.name));
  return names.filter((n) => !known.has(n));
}

/**
 * The lab's policy: the shipped dev policy (with the KYC pack's entries and rules from
 * kyc.yaml) under the environment `lab`, each tier's review
 * window shortened so a step missing a reviewer is refused within the lab's wait.
 */
function labPolicy(dir: string, reviewTimeoutMs: number): string {
  // The KYC pack's entries too: gdpr_erase onboards a customer before erasing them.
  const doc = withPackEntries(shippedPolicyDoc("dev"), "kyc");
  doc.environment = "lab";
  for (const t of Object.values(doc.tiers)) t["reviewTimeoutMs"] = reviewTimeoutMs;
  const file = join(dir, "lab.yaml");
  writeFileSync(file, stringify(doc));
  return file;
}

/**
 * Run every attack `trials` times against a live stack, each trial's parameters drawn from
 * the seed, and judge each from what was observed (docs/lab.md).
 */
export async function runLab(o: LabOptions): Promise<LabReport> {
  const log = o.log ?? (() => undefined);
  const dir = mkdtempSync(join(tmpdir(), "trias-lab-"));
  const keyDir = o.keyDir ?? join(dir, "keys");
  const policyFile = labPolicy(dir, o.reviewTimeoutMs);
  const started: { stack?: Stack } = {};
  const off = onShutdown(() => started.stack?.stop());
  try {
    const stack = await Stack.start({
      keyDir,
      logDir: join(dir, "logs"),
      environment: "lab",
      policyFile,
      ...(o.natsUrl ? { natsUrl: o.natsUrl } : {}),
      ...(process.env["NATS_USER"] ? { natsUser: process.env["NATS_USER"] } : {}),
      ...(process.env["NATS_PASSWORD"] ? { natsPass: process.env["NATS_PASSWORD"] } : {}),
    });
    started.stack = stack;
    log(
      `lab: stack ${stack.server ? "embedded" : "at"} ${stack.natsUrl}, logs in ${join(dir, "logs")}`,
    );
    const registry = KeyRegistry.load(stack.registryFile);
    const signers = new Map<string, Signer>();
    const signer = (name: string): Signer => {
      let s = signers.get(name);
      if (!s) {
        s = Signer.load(join(keyDir, keyFileName(name)));
        signers.set(name, s);
      }
      return s;
    };
    const client = new ConsoleClient(stack.admin, signer("console"), registry);
    const ledger = new Ledger(await stack.admin.kv(LEDGER_BUCKET));
    const attacks: Attack[] = ATTACKS.filter((a) => o.only.length === 0 || o.only.includes(a.name));
    const rows: LabRow[] = [];
    let counter = 0;
    for (let trial = 0; trial < o.trials; trial++) {
      const random = seededRandom(o.seed + trial);
      let clean: { run: string; events: StoredEvent[] } | null = null;
      const uniqueRun = (prefix: string) =>
        `${prefix}-${o.seed.toString(36)}-${trial}-${Date.now().toString(36)}-${(counter++).toString(36)}`;
      const cleanRun = async (c: { fresh?: boolean } = {}) => {
        if (clean && !c.fresh) return clean;
        const run = uniqueRun("lab-clean");
        await client.submit(
          {
            goal: "pay",
            program: "transfer",
            input: { from: "alice", to: "bob", amount: 1 },
            requestedBy: "lab",
          },
          run,
        );
        const closed = await client.waitForClose([run], o.timeoutMs);
        if (!closed.has(run))
          throw new Error(`the clean run ${run} did not close in ${o.timeoutMs} ms`);
        const deadline = Date.now() + o.timeoutMs;
        while (!(await checkpointOf(stack.admin, run)) && Date.now() < deadline)
          await new Promise((r) => setTimeout(r, 100));
        const made = { run, events: await readRun(stack.admin, run) };
        if (!c.fresh) clean = made;
        return made;
      };
      const ctx: LabContext = {
        bus: stack.admin,
        registry,
        forge: new Forge(stack.admin, signer),
        signer,
        ledger,
        client,
        policyDigest: loadPolicy(policyFile).digest,
        timeoutMs: o.timeoutMs,
        random,
        natsCredentials: (identity) => {
          const c = stack.natsCredentials(identity);
          return c.user ? c : null;
        },
        durablesOf: (identity) => {
          const a = stack.opts.agents?.find((x) => x.name === identity);
          return a ? durablesOf(a) : [];
        },
        connectAs: (c) =>
          Bus.connect({
            servers: stack.natsUrl,
            name: "trias-lab-thief",
            ...(c.user ? { user: c.user } : {}),
            ...(c.pass ? { pass: c.pass } : {}),
          }),
        destructive: stack.server !== null,
        cleanRun,
        uniqueRun,
      };
      for (const a of attacks) {
        const t0 = Date.now();
        let row: Omit<LabRow, "trial" | "attack" | "invariants" | "expected" | "ms">;
        try {
          row = await a.run(ctx);
        } catch (e) {
          row = { verdict: "crashed", observed: String((e as Error)?.message ?? e), runs: [] };
        }
        const done: LabRow = {
          trial,
          attack: a.name,
          invariants: a.invariants,
          expected: a.expected,
          ...row,
          ms: Date.now() - t0,
        };
        rows.push(done);
        log(`lab: trial ${trial} ${a.name}: ${done.verdict} (${done.observed})`);
      }
    }
    await stack.stop();
    delete started.stack;
    const summary: LabReport["summary"] = {};
    for (const r of rows) {
      const s = (summary[r.attack] ??= {});
      s[r.verdict] = (s[r.verdict] ?? 0) + 1;
    }
    const ok = rows.every((r) => !FAILING_VERDICTS.includes(r.verdict));
    return { ok, seed: o.seed, trials: o.trials, rows, summary, exitCode: ok ? 0 : 1 };
  } finally {
    off();
    await started.stack?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
