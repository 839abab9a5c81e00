import { readFileSync, writeFileSync } from "node:fs";
import type { Bus } from "@trias/bus";
import {
  decode,
  encode,
  runFilter,
  ValidationError,
  type Message,
  type Receipt,
} from "@trias/protocol";
import {
  chainLinks,
  foldRun,
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
  timestampMs?: number;
}

export interface AuditReport {
  run: string;
  ok: boolean;
  events: number;
  /** Events whose signature verified. */
  verified: number;
  /** Events an agent refused on arrival (each has a signed rejection record naming it). */
  refused: number[];
  /** The first event that breaks the audit, with why. */
  firstBad: { seq: number; reason: string } | null;
  claimed: Receipt | null;
  recomputedHead: string;
  outcome: string | null;
  violations: Violation[];
  problems: string[];
}

/**
 * Audit a run offline from the agents: every frame's signature against the registry, the
 * hash chain recomputed over the stored bytes and compared link by link with the receipt
 * the verifier signed at close, so a single changed byte names the event it is in.
 */
export function auditEvents(
  registry: KeyRegistry,
  run: string,
  stored: readonly StoredEvent[],
): AuditReport {
  const problems: string[] = [];
  let firstBad: AuditReport["firstBad"] = null;
  const bad = (seq: number, reason: string) => {
    problems.push(`seq ${seq}: ${reason}`);
    if (firstBad === null || seq < firstBad.seq) firstBad = { seq, reason };
  };
  const opened = new Map<number, Message>();
  const unopened = new Map<number, string>();
  for (const e of stored) {
    try {
      opened.set(e.seq, registry.open(e.data).message);
    } catch (err) {
      unopened.set(e.seq, (err as Error).message);
    }
  }
  const refusedSeqs = new Set<number>();
  for (const m of opened.values())
    if (m.kind === "message_rejected" && m.body.seq !== null) refusedSeqs.add(m.body.seq);
  let closed: Message | undefined;
  for (const m of opened.values()) if (m.kind === "run_closed") closed = m;
  const claimed = closed?.kind === "run_closed" ? closed.body.receipt : null;
  const covered = stored.filter((e) => claimed === null || e.seq <= claimed.lastSeq);
  const links = chainLinks(
    covered.map((e) => ({ seq: e.seq, subject: e.subject, frame: e.data })),
    run,
  );
  const head = links.at(-1) ?? "";
  if (claimed === null)
    problems.push("the run has no signed run_closed: nothing to audit the chain against");
  else {
    if (claimed.links) {
      const n = Math.max(claimed.links.length, links.length);
      for (let i = 0; i < n; i++) {
        if (claimed.links[i] !== links[i]) {
          const ev = covered[i];
          bad(
            ev?.seq ?? claimed.lastSeq,
            ev
              ? `changed since the receipt was sealed (chain link ${i + 1} differs)`
              : `missing: the receipt covers ${claimed.links.length} events, the trace has ${links.length}`,
          );
          break;
        }
      }
    }
    if (claimed.head !== head)
      problems.push(
        `receipt head ${claimed.head.slice(0, 16)}… does not match the recomputed ${head.slice(0, 16)}…`,
      );
    if (claimed.events !== covered.length)
      problems.push(
        `receipt covers ${claimed.events} events, the trace holds ${covered.length} up to seq ${claimed.lastSeq}`,
      );
  }
  for (const [seq, reason] of unopened) {
    if (!refusedSeqs.has(seq))
      bad(seq, `does not verify and no agent recorded refusing it: ${reason}`);
  }
  const events: TraceEvent[] = stored.flatMap((e) => {
    const m = opened.get(e.seq);
    return m && !refusedSeqs.has(e.seq)
      ? [{ seq: e.seq, subject: e.subject, frame: e.data, message: m }]
      : [];
  });
  const state = foldRun(events, run);
  return {
    run,
    ok: problems.length === 0,
    events: stored.length,
    verified: opened.size,
    refused: [...refusedSeqs].filter((s) => unopened.has(s) || opened.has(s)).sort((a, b) => a - b),
    firstBad,
    claimed,
    recomputedHead: head,
    outcome: state.outcome,
    violations: state.violations,
    problems,
  };
}

export async function readRun(bus: Bus, run: string): Promise<StoredEvent[]> {
  return (await bus.readAll(runFilter(run))).map((m) => ({
    seq: m.seq,
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    timestampMs: m.timestampMs,
  }));
}

/** A run's trace as a file (msgpack), for audits away from the bus. */
export function exportTrace(file: string, run: string, events: readonly StoredEvent[]): void {
  writeFileSync(
    file,
    encode({
      format: "trias-trace/v1",
      run,
      events: events.map((e) => ({
        seq: e.seq,
        subject: e.subject,
        data: e.data,
        headers: e.headers ?? {},
        timestampMs: e.timestampMs ?? 0,
      })),
    }),
  );
}

export function importTrace(file: string): { run: string; events: StoredEvent[] } {
  const raw = decode(readFileSync(file)) as { format?: unknown; run?: unknown; events?: unknown };
  if (
    raw.format !== "trias-trace/v1" ||
    typeof raw.run !== "string" ||
    !Array.isArray(raw.events)
  ) {
    throw new ValidationError(
      "schema_invalid",
      `${file} is not a Trias trace export (expected format trias-trace/v1); create one with: trias export <run> <file>`,
    );
  }
  return { run: raw.run, events: raw.events as StoredEvent[] };
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
