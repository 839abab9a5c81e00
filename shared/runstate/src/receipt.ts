import { hash } from "node:crypto";
import { parseSubject, type Receipt } from "@trias/protocol";
import type { TraceEvent } from "./state.js";

export const RECEIPT_ALG = "sha256-chain/v1" as const;
const SEED_PREFIX = "trias-receipt-v1|";

/**
 * h0 = sha256("trias-receipt-v1|" + run). Seeding with the run id means a chain copied from
 * another run, even one with the same events, never verifies.
 */
export function chainSeed(run: string): Uint8Array {
  return hash("sha256", SEED_PREFIX + run, "buffer");
}

/**
 * h_i = sha256(h_{i-1} || u64be(seq) || sha256(subject) || sha256(frame)). The frame is the
 * stored signed bytes, so every field of the envelope and the signature are covered; the
 * seq and subject are covered too, because they are what a deletion or a move would change.
 * Throws on a seq that is not a non-negative safe integer: a receipt over a corrupt position
 * would commit to something the stream cannot hold.
 */
export function chainLink(prev: Uint8Array, ev: ChainInput): Uint8Array {
  if (!Number.isSafeInteger(ev.seq) || ev.seq < 0) {
    throw new RangeError(`stream sequence ${String(ev.seq)} is not a non-negative integer`);
  }
  // One buffer and one-shot hashes: a link is computed for every message the verifier follows.
  const input = Buffer.allocUnsafe(prev.length + 8 + 64);
  input.set(prev, 0);
  input.writeBigUInt64BE(BigInt(ev.seq), prev.length);
  input.set(hash("sha256", ev.subject, "buffer"), prev.length + 8);
  input.set(hash("sha256", ev.frame, "buffer"), prev.length + 40);
  return hash("sha256", input, "buffer");
}

/** What the chain reads of an event; `message` only supplies the default run id. */
export interface ChainInput {
  seq: number;
  subject: string;
  frame: Uint8Array;
  message?: { run: string };
}

function runOf(events: readonly ChainInput[], run: string | undefined): string {
  return run ?? events[0]?.message?.run ?? "";
}

/**
 * The chain value after each event, hex: links[i] commits to events[0..i]. The last link is
 * the receipt head. A signed list of links lets audit name the first event that differs.
 */
export function chainLinks(events: readonly ChainInput[], run?: string): string[] {
  let h = chainSeed(runOf(events, run));
  const out: string[] = [];
  for (const ev of events) {
    h = chainLink(h, ev);
    out.push(Buffer.from(h).toString("hex"));
  }
  return out;
}

/**
 * The receipt of `events` in the order given (stream order). The run defaults to the first
 * event's run; pass it for an empty trace. The verifier computes this over every event of the
 * run it has read before it publishes run_closed, which therefore cannot cover itself.
 */
export function computeReceipt(events: readonly ChainInput[], run?: string): Receipt {
  const links = chainLinks(events, run);
  const head =
    links[links.length - 1] ?? Buffer.from(chainSeed(runOf(events, run))).toString("hex");
  return {
    alg: RECEIPT_ALG,
    head,
    events: events.length,
    firstSeq: events[0]?.seq ?? 0,
    lastSeq: events[events.length - 1]?.seq ?? 0,
  };
}

/**
 * The same chain, built one event at a time, keeping only each link (not the frames): what a
 * follower of the trace holds per open run. `upTo(seq)` gives exactly what computeReceipt and
 * chainLinks give over the events added so far with a seq up to `seq`.
 */
export class ReceiptChain {
  readonly run: string;
  readonly #links: { seq: number; link: string }[] = [];
  #head: Uint8Array;

  constructor(run: string) {
    this.run = run;
    this.#head = chainSeed(run);
  }

  /** Add the next stored event (in stream order). */
  add(ev: ChainInput): void {
    this.#head = chainLink(this.#head, ev);
    this.#links.push({ seq: ev.seq, link: Buffer.from(this.#head).toString("hex") });
  }

  get size(): number {
    return this.#links.length;
  }

  upTo(seq: number): { receipt: Receipt; links: string[] } {
    const covered = this.#links.filter((l) => l.seq <= seq);
    const last = covered[covered.length - 1];
    return {
      receipt: {
        alg: RECEIPT_ALG,
        head: last?.link ?? Buffer.from(chainSeed(this.run)).toString("hex"),
        events: covered.length,
        firstSeq: covered[0]?.seq ?? 0,
        lastSeq: last?.seq ?? 0,
      },
      links: covered.map((l) => l.link),
    };
  }
}

export interface AuditOptions {
  /** The run being audited; defaults to the run of the first event. */
  run?: string;
  /**
   * Per-event links the receipt's signer published (chainLinks of the events it sealed).
   * With them audit names the first bad event; without them it can only say the head differs.
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

export interface AuditResult {
  ok: boolean;
  run: string;
  /** The receipt audited against, or null when the trace holds no run_closed. */
  receipt: Receipt | null;
  /** The receipt recomputed over the covered events. */
  recomputed: Receipt;
  /** Events the receipt covers (seq <= receipt.lastSeq). */
  covered: number;
  /** Events after the receipt (refusals of messages after close, or anything else) with their kind. */
  uncovered: { seq: number; kind: string }[];
  firstBad?: BadEvent;
  /** Every mismatch found, in the order checked; empty when ok. */
  problems: string[];
}

/**
 * Recompute a run's receipt from its trace and compare it with the signed one. `receipt`
 * defaults to the one in the trace's run_closed. Checking each frame's signature is the
 * caller's part (it already did so to decode `message`); this checks order, membership and
 * the chain. Never throws.
 */
export function auditTrace(
  events: readonly TraceEvent[],
  receipt?: Receipt | null,
  opts: AuditOptions = {},
): AuditResult {
  const run = runOf(events, opts.run);
  const closing = events.find((e) => e.message.kind === "run_closed");
  const sealed: Receipt | null =
    receipt ??
    (closing && closing.message.kind === "run_closed" ? closing.message.body.receipt : null);
  const problems: string[] = [];
  let firstBad: BadEvent | undefined;
  const bad = (b: BadEvent): void => {
    problems.push(`seq ${b.seq}: ${b.reason}`);
    if (firstBad === undefined || b.index < firstBad.index) firstBad = b;
  };

  const limit = sealed?.lastSeq ?? Number.POSITIVE_INFINITY;
  const covered: TraceEvent[] = [];
  const uncovered: { seq: number; kind: string }[] = [];
  for (const ev of events) {
    if (typeof ev.seq === "number" && ev.seq > limit)
      uncovered.push({ seq: ev.seq, kind: ev.message.kind });
    else covered.push(ev);
  }

  // Order and membership first: these name the event even when no links were published.
  let prevSeq = -1;
  covered.forEach((ev, index) => {
    if (!Number.isSafeInteger(ev.seq) || ev.seq < 0)
      bad({ seq: ev.seq, index, reason: "stream sequence is not a non-negative integer" });
    else if (ev.seq <= prevSeq)
      bad({ seq: ev.seq, index, reason: `not after seq ${prevSeq}: reordered or duplicated` });
    if (ev.message.run !== run)
      bad({ seq: ev.seq, index, reason: `belongs to run ${ev.message.run}, not ${run}` });
    const subj = parseSubject(ev.subject);
    if (
      subj === null ||
      subj.run !== run ||
      subj.kind !== ev.message.kind ||
      subj.role !== ev.message.role
    ) {
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

  if (sealed === null) {
    problems.push("the trace holds no run_closed: there is no signed receipt to audit against");
    return {
      ok: false,
      run,
      receipt: null,
      recomputed,
      covered: covered.length,
      uncovered,
      ...(firstBad ? { firstBad } : {}),
      problems,
    };
  }
  // Typed as the one algorithm, but a caller may hand in a receipt read from anywhere.
  const alg: string = sealed.alg;
  if (alg !== RECEIPT_ALG) problems.push(`receipt algorithm ${alg} is not ${RECEIPT_ALG}`);

  const expected = opts.links;
  if (expected !== undefined) {
    if (
      expected.length !== sealed.events ||
      (expected.length > 0 && expected[expected.length - 1] !== sealed.head)
    ) {
      problems.push(
        "the published links do not end at the signed head: they cannot locate anything",
      );
    } else {
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
          bad({
            seq: covered[i]?.seq ?? -1,
            index: i,
            reason: "not covered by the receipt: inserted",
          });
        } else {
          bad({
            seq: covered[i]?.seq ?? -1,
            index: i,
            reason: "link differs: the event was changed, inserted, moved or one before it removed",
          });
        }
        break;
      }
    }
  }

  if (recomputed.head !== sealed.head) {
    problems.push(`recomputed head ${recomputed.head} differs from the signed head ${sealed.head}`);
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

  return {
    ok: problems.length === 0,
    run,
    receipt: sealed,
    recomputed,
    covered: covered.length,
    uncovered,
    ...(firstBad ? { firstBad } : {}),
    problems,
  };
}
