import { hash } from "node:crypto";
import type { Receipt } from "@trias/protocol";

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
  message?: { run: string } | null;
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
