import { createExact, isRevisionConflict, type Bus } from "@trias/bus";
import {
  CHECKPOINT_TYP,
  ReceiptCheckpoint,
  TransientError,
  type Receipt,
  type RunOutcome,
} from "@trias/protocol";
import {
  ANCHOR_GENESIS,
  ANCHOR_HEAD_KEY,
  anchorLink,
  anchoredRunKey,
  checkpointKey,
} from "@trias/runstate";
import type { Signer } from "@trias/signing";

type KV = Awaited<ReturnType<Bus["kv"]>>;

const ENC = new TextEncoder();

export interface ToAnchor {
  run: string;
  closeSeq: number;
  outcome: RunOutcome;
  receipt: Receipt;
  /**
   * The close's first delivery to a process that started before it was stored: nothing can
   * have anchored it yet, so the run's key is not looked up (a redelivery always is).
   */
  firstSight?: boolean;
}

/**
 * The stored head is a hint for a writer that starts (or lost its place): it is written with
 * every HEAD_EVERY-th checkpoint, so such a writer walks at most that many entries forward.
 * Writing it with each one cost a KV write per closed run.
 */
export const HEAD_EVERY = 16;

/**
 * Appends each closed run's receipt head to the signed chain of checkpoints in the receipts
 * bucket (docs/receipts.md, "The checkpoint"). Replicas of the verifier can write at once:
 * position n is taken with `createExact` (stored only if the key has no message, checked in
 * the replicated log's order, so on an R3 bucket too), so two writers never both own it; the
 * loser reads the winner's entry and chains after it. Once per run, off the per-event path.
 *
 * Within one process anchors go one at a time from the chain's end as this process last wrote
 * or saw it. Concurrent anchors from one process, each starting at the stored head, chased each
 * other: k runs closing at once walked about k²/2 entries (a bench warm-up of 200 runs made 58k
 * KV round trips and held closes for 17 s; docs/performance.md, "Anchoring").
 */
export class ReceiptAnchor {
  readonly #kv: KV;
  readonly #signer: Signer;
  readonly #now: () => number;
  /** The last anchor in flight or done: the next one starts after it settles. */
  #tail: Promise<unknown> = Promise.resolve();
  /** The chain's end as last written or seen here; null until read from the stored head. */
  #at: { n: number; anchor: string } | null = null;
  /** Positions found taken by another writer (a replica, or a restarted process). */
  #conflicts = 0;

  constructor(kv: KV, signer: Signer, now: () => number = Date.now) {
    this.#kv = kv;
    this.#signer = signer;
    this.#now = now;
  }

  /** Anchor one run; returns its checkpoint position. Throws a retryable error on a KV failure. */
  anchor(x: ToAnchor): Promise<number> {
    const next = this.#tail.then(() => this.#anchorOne(x));
    this.#tail = next.catch(() => undefined);
    return next;
  }

  /** How many positions this process found already taken (a measure of replicas' contention). */
  get conflicts(): number {
    return this.#conflicts;
  }

  async #anchorOne(x: ToAnchor): Promise<number> {
    try {
      return await this.#anchor(x);
    } catch (e) {
      // The stored chain may have moved on: read its head again next time.
      this.#at = null;
      throw new TransientError(
        "bus_unavailable",
        `could not anchor the receipt of run ${x.run}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }

  async #anchor(x: ToAnchor): Promise<number> {
    const [done, head] = await Promise.all([
      x.firstSight ? null : this.#kv.get(anchoredRunKey(x.run)),
      this.#at ? null : this.#kv.get(ANCHOR_HEAD_KEY),
    ]);
    if (done && done.operation === "PUT" && done.value.length > 0) return Number(done.string());
    let at = this.#at ?? { n: 0, anchor: ANCHOR_GENESIS };
    if (!this.#at && head && head.operation === "PUT" && head.value.length > 0)
      at = JSON.parse(head.string()) as { n: number; anchor: string };
    const { links: _links, ...receipt } = x.receipt;
    // Each conflict is an entry that exists (a replica's, or one the stale head hint did not
    // name): the walk moves forward one entry each time and ends at the chain's end.
    for (;;) {
      const n = at.n + 1;
      const anchor = anchorLink(at.anchor, n, x.run, x.closeSeq, receipt.head);
      const cp: ReceiptCheckpoint = {
        v: 1,
        n,
        run: x.run,
        closeSeq: x.closeSeq,
        outcome: x.outcome,
        receipt,
        prev: at.anchor,
        anchor,
        at: this.#now(),
      };
      const jws = await this.#signer.signJws(cp, CHECKPOINT_TYP);
      try {
        await createExact(this.#kv, checkpointKey(n), ENC.encode(jws));
      } catch (e) {
        if (!isRevisionConflict(e)) throw e;
        this.#conflicts++;
        // Another replica holds position n: chain after its entry.
        const other = await this.#kv.get(checkpointKey(n));
        if (!other || other.operation !== "PUT") throw e;
        const theirs = ReceiptCheckpoint.parse(
          JSON.parse(Buffer.from(other.string().split(".")[1] ?? "", "base64url").toString()),
        );
        at = { n: theirs.n, anchor: theirs.anchor };
        continue;
      }
      await Promise.all([
        n % HEAD_EVERY === 0 ? this.#kv.put(ANCHOR_HEAD_KEY, JSON.stringify({ n, anchor })) : null,
        this.#kv.put(anchoredRunKey(x.run), String(n)),
      ]);
      this.#at = { n, anchor };
      return n;
    }
  }
}
