import { parseSubject, type Message, type Receipt } from "@trias/protocol";
import { advance, foldRun } from "./reduce.js";
import { RECEIPT_ALG, chainLinks, chainSeed, type ChainInput } from "./receipt.js";
import type { RunState, TraceEvent, Violation } from "./state.js";

/**
 * One stored message of the run as the audit reads it: the stored bytes, and the envelope
 * when its signature verified (null otherwise, with why in `unverified`). docs/receipts.md
 * says what each check below means for an outside verifier.
 */
export interface AuditEvent extends ChainInput {
  message: Message | null;
  /** Why the frame did not open (signature, key not in effect, malformed), when message is null. */
  unverified?: string;
}

export interface AuditOptions {
  /** The run being audited; defaults to the run of the first event. */
  run?: string;
  /**
   * Per-event links the receipt's signer published (chainLinks of the events it sealed).
   * Defaults to the receipt's own `links`. With them audit names the first bad event;
   * without them it can only say the head differs.
   */
  links?: readonly string[];
}

export interface BadEvent {
  /** Stream seq of the first event that does not match (for a missing event: the one before the gap). */
  seq: number;
  /** Position in the audited events (for a missing event: where it should have been). */
  index: number;
  reason: string;
}

/**
 * An event stored after the receipt (seq > receipt.lastSeq), other than the run_closed that
 * carries it. `late` (a slow reviewer's verdict the fold records as late) and `record` (an
 * agent's signed refusal record) change nothing and are warnings; `tampering` (anything
 * else: an unverifiable frame, a splice, a duplicate, a message that would change the run)
 * fails the audit.
 */
export interface AfterReceipt {
  seq: number;
  kind: string;
  sender: string | null;
  verdict: "late" | "record" | "tampering";
  reason: string;
}

export interface AuditResult {
  ok: boolean;
  run: string;
  /** The receipt audited against, or null when the trace holds no run_closed. */
  receipt: Receipt | null;
  /** Stream seq of the run_closed that carries the receipt, or null. */
  closedAt: number | null;
  /** The receipt recomputed over the covered events. */
  recomputed: Receipt;
  /** Events the receipt covers (seq <= receipt.lastSeq). */
  covered: number;
  /** Covered events an agent refused on arrival (each named by a signed rejection record). */
  refused: number[];
  /** Events after the receipt, classified. */
  after: AfterReceipt[];
  firstBad?: BadEvent;
  /** Illegal transitions inside the covered trace (recorded attempts, not audit failures). */
  violations: Violation[];
  /** The run's state after every covered event and the close. */
  state: RunState;
  /** Every failure found, in the order checked; empty when ok. */
  problems: string[];
  /** What does not fail the audit but an auditor should read (late verdicts, records after close). */
  warnings: string[];
}

function runOf(events: readonly AuditEvent[], run: string | undefined): string {
  if (run !== undefined) return run;
  for (const e of events) if (e.message) return e.message.run;
  return parseSubject(events[0]?.subject ?? "")?.run ?? "";
}

/** The same event with a message: what the fold takes. */
function traced(ev: AuditEvent): TraceEvent | null {
  return ev.message
    ? { seq: ev.seq, subject: ev.subject, frame: ev.frame, message: ev.message }
    : null;
}

/**
 * Audit a run's whole trace against the receipt its run_closed carries (or `receipt`):
 * - the receipt's chain recomputed over every covered event (seq <= lastSeq), link by link;
 * - order (strictly increasing seq), membership (the run's envelope and subject) and every
 *   covered frame either verified or refused on arrival by a named agent;
 * - the run's state machine folded over the covered events and the close;
 * - every event after the receipt classified (see AfterReceipt) by the same fold, in which
 *   a sealed run takes nothing (reduce.ts, afterClose).
 * Checking signatures is the caller's part (message null when a frame does not verify).
 * Never throws.
 */
export function auditTrace(
  events: readonly AuditEvent[],
  receipt?: Receipt | null,
  opts: AuditOptions = {},
): AuditResult {
  const run = runOf(events, opts.run);
  const closing = events.find(
    (e) =>
      e.message?.kind === "run_closed" &&
      e.message.run === run &&
      parseSubject(e.subject)?.run === run,
  );
  const sealed: Receipt | null =
    receipt ?? (closing?.message?.kind === "run_closed" ? closing.message.body.receipt : null);
  const problems: string[] = [];
  const warnings: string[] = [];
  let firstBad: BadEvent | undefined;
  const bad = (b: BadEvent): void => {
    problems.push(`seq ${b.seq}: ${b.reason}`);
    if (firstBad === undefined || b.index < firstBad.index) firstBad = b;
  };

  const limit = sealed?.lastSeq ?? Number.POSITIVE_INFINITY;
  const covered: AuditEvent[] = [];
  const later: AuditEvent[] = [];
  for (const ev of events) {
    if (typeof ev.seq === "number" && ev.seq > limit) later.push(ev);
    else covered.push(ev);
  }

  // Refusal records name what they refused: those events are in the chain. The fold skips
  // what the verifier (the receipt's signer, which folds what it admits) refused, so the
  // audit's state is the one the receipt was sealed from; another agent's refusal (one that
  // failed for its own reasons) does not take an event out of it.
  const refusedSeqs = new Set<number>();
  const refusedBySealer = new Set<number>();
  for (const e of events) {
    const m = e.message;
    if (m?.kind === "message_rejected" && m.run === run && m.body.seq !== null) {
      refusedSeqs.add(m.body.seq);
      if (m.role === "verifier") refusedBySealer.add(m.body.seq);
    }
  }

  // Order and membership first: these name the event even when no links were published.
  let prevSeq = -1;
  covered.forEach((ev, index) => {
    if (!Number.isSafeInteger(ev.seq) || ev.seq < 0)
      bad({ seq: ev.seq, index, reason: "stream sequence is not a non-negative integer" });
    else if (ev.seq <= prevSeq)
      bad({ seq: ev.seq, index, reason: `not after seq ${prevSeq}: reordered or duplicated` });
    const subj = parseSubject(ev.subject);
    const m = ev.message;
    if (m === null) {
      if (subj === null || subj.run !== run)
        bad({ seq: ev.seq, index, reason: `subject ${ev.subject} is not a subject of run ${run}` });
      else if (!refusedSeqs.has(ev.seq))
        bad({
          seq: ev.seq,
          index,
          reason: `does not verify and no agent recorded refusing it: ${ev.unverified ?? "unreadable frame"}`,
        });
    } else {
      if (m.run !== run)
        bad({ seq: ev.seq, index, reason: `belongs to run ${m.run}, not ${run}: spliced` });
      if (subj === null || subj.run !== run || subj.kind !== m.kind || subj.role !== m.role)
        bad({ seq: ev.seq, index, reason: `subject ${ev.subject} does not match its message` });
    }
    prevSeq = Number.isSafeInteger(ev.seq) ? ev.seq : prevSeq;
  });

  let links: string[] = [];
  try {
    links = chainLinks(covered, run);
  } catch {
    // Already reported above as a bad sequence number; the chain cannot be recomputed.
  }
  const recomputed: Receipt = {
    alg: RECEIPT_ALG,
    head: links[links.length - 1] ?? Buffer.from(chainSeed(run)).toString("hex"),
    events: covered.length,
    firstSeq: covered[0]?.seq ?? 0,
    lastSeq: covered[covered.length - 1]?.seq ?? 0,
  };

  const state = foldRun(
    covered.flatMap((e) => {
      const t = refusedBySealer.has(e.seq) ? null : traced(e);
      return t ? [t] : [];
    }),
    run,
  );
  const violations = [...state.violations];

  // After the receipt: the same fold goes on, so what a sealed run may take is decided by
  // the one rule the agents apply (afterClose) and the verdict rules, not by a second list.
  const after: AfterReceipt[] = [];
  // The run ends at its receipt: the close is judged against the covered events alone (what
  // the verifier decided on), and an event stored between the receipt and the close (a
  // reviewer answering while the run was being closed) is judged against the sealed run,
  // as an event after the close is; the stream order among them is kept.
  const sealedFirst = closing && later.includes(closing);
  const judged = sealedFirst ? [closing, ...later.filter((e) => e !== closing)] : later;
  for (const ev of judged) {
    const m = ev.message;
    if (sealedFirst && ev !== closing && ev.seq <= state.lastSeq) state.lastSeq = ev.seq - 1;
    const entry = (verdict: AfterReceipt["verdict"], reason: string): void => {
      after.push({
        seq: ev.seq,
        kind: m?.kind ?? "unknown",
        sender: m?.sender ?? null,
        verdict,
        reason,
      });
      if (verdict === "tampering") {
        bad({
          seq: ev.seq,
          index: covered.length + after.length - 1,
          reason: `after the receipt: ${reason}`,
        });
      } else warnings.push(`seq ${ev.seq}: after the receipt, not covered by it: ${reason}`);
    };
    if (m === null) {
      entry("tampering", `does not verify: ${ev.unverified ?? "unreadable frame"}`);
      continue;
    }
    const lateBefore = lateCount(state);
    const recordsBefore = state.rejections.length;
    const violationsBefore = state.violations.length;
    const phaseBefore = state.phase;
    const ok = advance(state, { seq: ev.seq, subject: ev.subject, frame: ev.frame, message: m });
    const v = state.violations.length > violationsBefore ? state.violations.at(-1) : undefined;
    if (ev === closing) {
      if (!ok || v)
        problems.push(
          `seq ${ev.seq}: the run_closed itself is illegal: ${v?.reason ?? "could not be applied"}`,
        );
      continue;
    }
    if (!ok) entry("tampering", "could not be applied to the run's state");
    else if (v) entry("tampering", `${m.kind} by ${m.sender}: ${v.reason}`);
    else if (m.kind === "verdict" && lateCount(state) > lateBefore && state.phase === phaseBefore)
      entry("late", `a late verdict by ${m.sender} (${m.body.decision}); it changes nothing`);
    else if (m.kind === "message_rejected" && state.rejections.length > recordsBefore)
      entry(
        "record",
        `${m.body.by} recorded refusing ${m.body.subject}${m.body.seq === null ? "" : ` #${m.body.seq}`} (${m.body.code})`,
      );
    else entry("tampering", `a ${m.kind} by ${m.sender} changes the run after its receipt`);
  }

  if (sealed === null) {
    problems.push("the trace holds no run_closed: there is no signed receipt to audit against");
  } else {
    // Typed as the one algorithm, but a caller may hand in a receipt read from anywhere.
    const alg: string = sealed.alg;
    if (alg !== RECEIPT_ALG) problems.push(`receipt algorithm ${alg} is not ${RECEIPT_ALG}`);
    compareLinks(opts.links ?? sealed.links, sealed, links, covered, bad, problems);
    if (recomputed.head !== sealed.head) {
      problems.push(
        `recomputed head ${recomputed.head} differs from the signed head ${sealed.head}`,
      );
      if (firstBad === undefined && covered.length > 0 && recomputed.firstSeq !== sealed.firstSeq) {
        bad({
          seq: recomputed.firstSeq,
          index: 0,
          reason: `the receipt starts at seq ${sealed.firstSeq}: events before this one are missing or it was inserted`,
        });
      }
    }
    if (recomputed.events !== sealed.events)
      problems.push(
        `the receipt covers ${sealed.events} events, the stream holds ${recomputed.events}`,
      );
    if (recomputed.firstSeq !== sealed.firstSeq)
      problems.push(`first seq ${recomputed.firstSeq}, receipt says ${sealed.firstSeq}`);
    if (recomputed.lastSeq !== sealed.lastSeq)
      problems.push(`last seq ${recomputed.lastSeq}, receipt says ${sealed.lastSeq}`);
  }

  return {
    ok: problems.length === 0,
    run,
    receipt: sealed,
    closedAt: closing?.seq ?? null,
    recomputed,
    covered: covered.length,
    refused: [...refusedSeqs]
      .filter((q) => q <= limit && covered.some((e) => e.seq === q))
      .sort((a, b) => a - b),
    after,
    ...(firstBad ? { firstBad } : {}),
    violations,
    state,
    problems,
    warnings,
  };
}

function lateCount(s: RunState): number {
  let n = 0;
  for (const st of s.steps) n += st?.late.length ?? 0;
  return n;
}

function compareLinks(
  expected: readonly string[] | undefined,
  sealed: Receipt,
  links: readonly string[],
  covered: readonly AuditEvent[],
  bad: (b: BadEvent) => void,
  problems: string[],
): void {
  if (expected === undefined) return;
  if (
    expected.length !== sealed.events ||
    (expected.length > 0 && expected[expected.length - 1] !== sealed.head)
  ) {
    problems.push("the published links do not end at the signed head: they cannot locate anything");
    return;
  }
  const n = Math.max(expected.length, links.length);
  for (let i = 0; i < n; i++) {
    const want = expected[i];
    const got = links[i];
    if (want === got) continue;
    if (got === undefined) {
      const before = covered[covered.length - 1]?.seq ?? sealed.firstSeq;
      bad({
        seq: before,
        index: i,
        reason: `the receipt commits to ${expected.length} events, the stream holds ${links.length}: missing after seq ${before}`,
      });
    } else if (want === undefined) {
      bad({ seq: covered[i]?.seq ?? -1, index: i, reason: "not covered by the receipt: inserted" });
    } else {
      bad({
        seq: covered[i]?.seq ?? -1,
        index: i,
        reason: "link differs: the event was changed, inserted, moved or one before it removed",
      });
    }
    return;
  }
}
