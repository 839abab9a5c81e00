import { readFileSync, writeFileSync } from "node:fs";
import { RECEIPTS_BUCKET, type Bus } from "@trias/bus";
import {
  CHECKPOINT_TYP,
  MAX_FRAME_BYTES,
  ReceiptCheckpoint,
  TRACE_FORMAT,
  TriasError,
  parseTraceExport,
  decode,
  encode,
  subjectFor,
  type Receipt,
  runOfSubject,
} from "@trias/protocol";
import {
  anchoredRunKey,
  auditTrace,
  checkAnchorChain,
  checkpointKey,
  foldRun,
  type AfterReceipt,
  type AuditEvent,
  type RunState,
  type TraceEvent,
  type Violation,
} from "@trias/runstate";
import type { KeyRegistry } from "@trias/signing";

/** One stored message of a run, as the stream holds it. */
export interface StoredEvent {
  seq: number;
  subject: string;
  data: Uint8Array;
  /** NATS headers as stored (trace context, cause); not covered by signatures. */
  headers?: Record<string, string>;
  /** When the server stored it (ms since the epoch); 0 or absent when unknown. */
  timestampMs?: number;
}

export interface AuditReport {
  run: string;
  ok: boolean;
  events: number;
  /** Events whose signature verified (by a key in effect when the event was stored). */
  verified: number;
  /** Covered events an agent refused on arrival (each has a signed rejection record naming it). */
  refused: number[];
  /** The first event that breaks the audit, with why. */
  firstBad: { seq: number; reason: string } | null;
  claimed: Receipt | null;
  /** Stream seq of the run_closed carrying the receipt. */
  closedAt: number | null;
  recomputedHead: string;
  outcome: string | null;
  violations: Violation[];
  /** Every event stored after the receipt, classified: late / record (warnings), tampering (failure). */
  after: AfterReceipt[];
  problems: string[];
  warnings: string[];
}

/** The time a stored event counts as signed at for key validity; null when unknown. */
function storedAt(e: StoredEvent): number | null {
  return typeof e.timestampMs === "number" && e.timestampMs > 0 ? e.timestampMs : null;
}

/**
 * Open every stored event against the registry at the time it was stored (a key revoked
 * later still signs what came before; docs/receipts.md, "Keys and their time of effect").
 */
export function openEvents(registry: KeyRegistry, stored: readonly StoredEvent[]): AuditEvent[] {
  return stored.map((e) => {
    try {
      const o = registry.open(e.data, MAX_FRAME_BYTES, storedAt(e));
      return { seq: e.seq, subject: e.subject, frame: e.data, message: o.message };
    } catch (err) {
      return {
        seq: e.seq,
        subject: e.subject,
        frame: e.data,
        message: null,
        unverified: (err as Error).message,
      };
    }
  });
}

/**
 * Audit a run offline from the agents: every frame's signature against the registry (at
 * its store time), then runstate's whole-trace audit (auditTrace): the receipt's chain link
 * by link, order, membership, subject and run, the state machine, and every event stored
 * after the receipt. A single changed byte names the event it is in.
 */
export function auditEvents(
  registry: KeyRegistry,
  run: string,
  stored: readonly StoredEvent[],
): AuditReport {
  const events = openEvents(registry, stored);
  const r = auditTrace(events, null, { run });
  const problems = [...r.problems];
  const warnings = [...r.warnings];
  if (stored.length === 0)
    problems.unshift(`the trace holds no message of run ${run}: purged, or never existed`);
  const keySet = r.receipt?.keySet;
  if (r.receipt && keySet === undefined)
    warnings.push("the receipt names no key set (issued before receipts named their keys)");
  else if (keySet && registry.keySetDigest(keySet.at) !== keySet.digest)
    warnings.push(
      `the receipt was sealed under key set ${keySet.digest.slice(0, 16)}…, this registry gives ${registry.keySetDigest(keySet.at).slice(0, 16)}… at ${new Date(keySet.at).toISOString()}: keys were removed, or a revocation or key dated before the close since`,
    );
  return {
    run,
    ok: problems.length === 0,
    events: stored.length,
    verified: events.filter((e) => e.message !== null).length,
    refused: r.refused,
    firstBad: r.firstBad ? { seq: r.firstBad.seq, reason: r.firstBad.reason } : null,
    claimed: r.receipt,
    closedAt: r.closedAt,
    recomputedHead: r.recomputed.head,
    outcome: r.state.outcome,
    violations: r.violations,
    after: r.after,
    problems,
    warnings,
  };
}

/**
 * A run's stored events, read from the run's first task_submitted rather than from the
 * stream's beginning (Bus.readRun, docs/scaling.md "Cold paths"). When that start was missing
 * or missed messages of the run, the whole trace was read: `onFallback` hears why (not for a
 * run with no message at all, which is no such run).
 */
export async function readRun(
  bus: Bus,
  run: string,
  onFallback: (why: string) => void = () => undefined,
): Promise<StoredEvent[]> {
  const r = await bus.readRun(run);
  if (r.fallback !== null && r.messages.length > 0) onFallback(r.fallback);
  return r.messages.map((m) => ({
    seq: m.seq,
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    timestampMs: m.timestampMs,
  }));
}

/** A run's trace as a file (msgpack), for audits away from the bus. */
export function exportTrace(
  file: string,
  run: string,
  events: readonly StoredEvent[],
  checkpoint?: string | null,
): void {
  writeFileSync(
    file,
    encode({
      format: TRACE_FORMAT,
      run,
      events: events.map((e) => ({
        seq: e.seq,
        subject: e.subject,
        data: e.data,
        headers: e.headers ?? {},
        timestampMs: e.timestampMs ?? 0,
      })),
      ...(checkpoint ? { checkpoint } : {}),
    }),
  );
}

/** Input the audit cannot read at all: a missing, truncated or foreign file. Exit code 3. */
export class UnreadableInput extends TriasError {
  override readonly name = "UnreadableInput";
  constructor(message: string, cause?: unknown) {
    super("input_unreadable", message, cause === undefined ? {} : { cause });
  }
}

const HOW = "create one with: trias export <run> <file>";

export function importTrace(file: string): {
  run: string;
  events: StoredEvent[];
  checkpoint: string | null;
} {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (e) {
    throw new UnreadableInput(`cannot read ${file}: ${(e as Error).message}`, e);
  }
  let raw: unknown;
  try {
    raw = decode(bytes);
  } catch (e) {
    throw new UnreadableInput(
      `${file} is not a Trias trace export: its bytes are not msgpack (truncated or another kind of file); ${HOW}`,
      e,
    );
  }
  const r = parseTraceExport(raw);
  if (!r.ok) {
    const fmt = (raw as { format?: unknown } | null)?.format;
    throw new UnreadableInput(
      fmt === TRACE_FORMAT
        ? `${file} is a damaged ${TRACE_FORMAT} export: ${r.error}`
        : `${file} is not a Trias trace export (expected format ${TRACE_FORMAT}); ${HOW}`,
    );
  }
  return { run: r.value.run, events: r.value.events, checkpoint: r.value.checkpoint ?? null };
}

/** The run's state machine replayed over its trace: each transition, then the final state. */
export function replayLines(
  registry: KeyRegistry,
  run: string,
  stored: readonly StoredEvent[],
): { lines: string[]; state: RunState } {
  const events: TraceEvent[] = [];
  for (const e of stored) {
    try {
      events.push({
        seq: e.seq,
        subject: e.subject,
        frame: e.data,
        message: registry.open(e.data).message,
      });
    } catch {
      // A frame that does not verify was refused when it arrived; it has no transition.
    }
  }
  const state = foldRun(events, run);
  const lines = state.transitions.map(
    (t) => `#${t.seq}  ${t.step === null ? "run   " : `step ${t.step}`}  ${t.from} -> ${t.to}`,
  );
  for (const v of state.violations)
    lines.push(`#${v.seq}  illegal ${v.kind} in phase ${v.phase}: ${v.reason}`);
  return { lines, state };
}

/** A checkpoint as stored: its position key, the JWS, when the server stored it. */
interface StoredCheckpoint {
  key: string;
  jws: string;
  storedAt: number | null;
}

type Kv = Awaited<ReturnType<Bus["kv"]>>;

async function receiptsBucket(bus: Bus): Promise<Kv | null> {
  try {
    const kv = await bus.kv(RECEIPTS_BUCKET);
    await kv.status();
    return kv;
  } catch {
    return null;
  }
}

async function readCheckpoint(kv: Kv, key: string): Promise<StoredCheckpoint | null> {
  const e = await kv.get(key);
  if (!e || e.operation !== "PUT" || e.value.length === 0) return null;
  return { key, jws: e.string(), storedAt: e.created.getTime() };
}

/**
 * Open a checkpoint: a compact JWS of typ trias-checkpoint+json signed by a verifier key in
 * effect when it was stored, whose payload is a ReceiptCheckpoint. Throws with what is wrong.
 */
export function openCheckpoint(
  registry: KeyRegistry,
  jws: string,
  storedAt: number | null = null,
): ReceiptCheckpoint {
  const { header, payload, key } = registry.openJws(jws, storedAt);
  if (header["typ"] !== CHECKPOINT_TYP)
    throw new TriasError(
      "schema_invalid",
      `JWS typ ${String(header["typ"])} is not ${CHECKPOINT_TYP}`,
    );
  if (key.role !== "verifier")
    throw new TriasError(
      "role_mismatch",
      `signed by ${key.name}, a ${key.role}: only a verifier anchors receipts`,
    );
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(payload).toString("utf8"));
  } catch (e) {
    throw new TriasError("schema_invalid", "the checkpoint payload is not JSON", { cause: e });
  }
  const r = ReceiptCheckpoint.safeParse(json);
  if (!r.success)
    throw new TriasError("schema_invalid", `not a receipt checkpoint: ${r.error.message}`);
  return r.data;
}

/** The JWS checkpoint of one run, or null when it is not anchored (or there is no bucket). */
export async function checkpointOf(bus: Bus, run: string): Promise<string | null> {
  const kv = await receiptsBucket(bus);
  if (!kv) return null;
  const n = await kv.get(anchoredRunKey(run));
  if (!n || n.operation !== "PUT" || n.value.length === 0) return null;
  return (await readCheckpoint(kv, checkpointKey(Number(n.string()))))?.jws ?? null;
}

/** Check an exported checkpoint against the run's audit: same run, receipt head and close. */
export function checkCheckpoint(
  registry: KeyRegistry,
  jws: string,
  report: AuditReport,
): string | null {
  try {
    const cp = openCheckpoint(registry, jws);
    if (cp.run !== report.run) return `the checkpoint is for run ${cp.run}, not ${report.run}`;
    if (cp.receipt.head !== report.claimed?.head || cp.closeSeq !== report.closedAt)
      return `checkpoint ${cp.n} anchors receipt head ${cp.receipt.head} at seq ${cp.closeSeq}, the trace's run_closed is at seq ${String(report.closedAt)} with head ${String(report.claimed?.head)}`;
    return null;
  } catch (e) {
    return `the checkpoint does not verify: ${(e as Error).message}`;
  }
}

export interface AllReport {
  ok: boolean;
  /** Checkpoints read and the last one: keep it elsewhere to notice a truncated chain later. */
  checkpoints: number;
  head: { n: number; anchor: string } | null;
  /** Runs anchored whose messages the trace no longer holds. */
  missing: { run: string; n: number; head: string }[];
  runs: { run: string; ok: boolean; anchored: number | null; firstProblem: string | null }[];
  problems: string[];
  warnings: string[];
}

/**
 * Audit every run the trace and the checkpoint chain know of: the chain itself (signatures,
 * positions without gaps, anchors), each anchored run present and auditing to the head its
 * checkpoint names, and each closed run anchored. A purged run is named by its checkpoint.
 */
export async function auditAll(bus: Bus, registry: KeyRegistry): Promise<AllReport> {
  const problems: string[] = [];
  const warnings: string[] = [];
  const kv = await receiptsBucket(bus);
  const entries: ReceiptCheckpoint[] = [];
  if (!kv) {
    problems.push(
      `no ${RECEIPTS_BUCKET} bucket: closed runs are not anchored, so a purged run cannot be noticed; create it with \`trias setup\``,
    );
  } else {
    const keys: string[] = [];
    for await (const k of await kv.keys("cp.>")) keys.push(k);
    for (const key of keys) {
      const stored = await readCheckpoint(kv, key);
      if (!stored) continue;
      try {
        const cp = openCheckpoint(registry, stored.jws, stored.storedAt);
        if (checkpointKey(cp.n) !== key)
          throw new Error(`it says position ${cp.n} but is stored as ${key}`);
        entries.push(cp);
      } catch (e) {
        problems.push(`checkpoint ${key}: ${(e as Error).message}`);
      }
    }
  }
  const chain = checkAnchorChain(entries);
  problems.push(...chain.problems);

  const info = await bus.streamInfo();
  const firstSeq = info.state.first_seq;
  const closedRuns = new Map<string, number>();
  for (const m of await bus.readAll(subjectFor("verifier", "run_closed", "*"))) {
    const run = runOfSubject(m.subject);
    if (!closedRuns.has(run)) closedRuns.set(run, m.seq);
  }
  const missing: AllReport["missing"] = [];
  const runs: AllReport["runs"] = [];
  const names = new Set([...chain.runs.keys(), ...closedRuns.keys()]);
  for (const run of [...names].sort()) {
    const cp = chain.runs.get(run);
    const stored = await readRun(bus, run);
    if (stored.length === 0 && cp) {
      if (cp.closeSeq < firstSeq) {
        warnings.push(
          `run ${run} (checkpoint ${cp.n}) has aged out of the trace (stream starts at seq ${firstSeq}); its receipt head was ${cp.receipt.head}`,
        );
        continue;
      }
      missing.push({ run, n: cp.n, head: cp.receipt.head });
      problems.push(
        `run ${run} is missing: checkpoint ${cp.n} anchors its receipt (head ${cp.receipt.head}, closed at seq ${cp.closeSeq}) but the trace holds none of its messages: purged`,
      );
      runs.push({ run, ok: false, anchored: cp.n, firstProblem: "missing from the trace" });
      continue;
    }
    const report = auditEvents(registry, run, stored);
    let first = report.problems[0] ?? null;
    if (!report.ok) problems.push(`run ${run}: audit failed: ${first ?? ""}`);
    if (cp) {
      if (cp.receipt.head !== report.claimed?.head || cp.closeSeq !== report.closedAt) {
        first ??= `differs from checkpoint ${cp.n}`;
        problems.push(
          `run ${run}: checkpoint ${cp.n} anchors receipt head ${cp.receipt.head} at seq ${cp.closeSeq}, the trace's run_closed is at seq ${String(report.closedAt)} with head ${String(report.claimed?.head)}`,
        );
      }
    } else {
      warnings.push(
        `run ${run} closed at seq ${String(closedRuns.get(run))} but is not anchored (yet)`,
      );
    }
    runs.push({ run, ok: first === null, anchored: cp?.n ?? null, firstProblem: first });
  }
  return {
    ok: problems.length === 0,
    checkpoints: entries.length,
    head: chain.head,
    missing,
    runs,
    problems,
    warnings,
  };
}
