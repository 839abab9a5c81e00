import { hash } from "node:crypto";
import type { ReceiptCheckpoint } from "@trias/protocol";

/** Key of checkpoint n in the receipts bucket. */
export function checkpointKey(n: number): string {
  return `cp.${n}`;
}
/** Key naming the checkpoint of a run (so a redelivered close is anchored once). */
export function anchoredRunKey(run: string): string {
  return `run.${run}`;
}
/** A hint of the latest checkpoint ({n, anchor} as JSON): where a writer starts looking. */
export const ANCHOR_HEAD_KEY = "head";

/** The `prev` of the first checkpoint. */
export const ANCHOR_GENESIS = "0".repeat(64);
const ANCHOR_PREFIX = "trias-anchor-v1|";

/**
 * anchor_n = sha256("trias-anchor-v1|" || prev || u64be(n) || sha256(run) || u64be(closeSeq)
 * || head), with prev and head as their 32 raw bytes (docs/receipts.md, "The checkpoint").
 * Throws on a position or seq that is not a safe non-negative integer, or a digest that is
 * not 64 hex characters: an anchor over either would commit to nothing checkable.
 */
export function anchorLink(
  prev: string,
  n: number,
  run: string,
  closeSeq: number,
  head: string,
): string {
  for (const [name, v] of [
    ["n", n],
    ["closeSeq", closeSeq],
  ] as const) {
    if (!Number.isSafeInteger(v) || v < 0)
      throw new RangeError(`${name} ${String(v)} is not a non-negative integer`);
  }
  for (const [name, d] of [
    ["prev", prev],
    ["head", head],
  ] as const) {
    if (!/^[0-9a-f]{64}$/.test(d)) throw new RangeError(`${name} is not a sha256 hex digest`);
  }
  const buf = Buffer.alloc(ANCHOR_PREFIX.length + 32 + 8 + 32 + 8 + 32);
  let at = buf.write(ANCHOR_PREFIX, 0, "utf8");
  at += Buffer.from(prev, "hex").copy(buf, at);
  buf.writeBigUInt64BE(BigInt(n), at);
  at += 8;
  at += hash("sha256", run, "buffer").copy(buf, at);
  buf.writeBigUInt64BE(BigInt(closeSeq), at);
  at += 8;
  Buffer.from(head, "hex").copy(buf, at);
  return hash("sha256", buf, "hex");
}

export interface AnchorChainResult {
  ok: boolean;
  /** The last entry: what an operator keeps elsewhere to detect a truncated chain later. */
  head: { n: number; anchor: string } | null;
  /** The latest checkpoint of each run. */
  runs: Map<string, ReceiptCheckpoint>;
  problems: string[];
}

/**
 * Check a chain of checkpoints (each already signature-checked): positions 1..max without a
 * gap, each anchor recomputed, each prev the anchor before. A run anchored twice (a crash
 * between two writes) is fine when both name the same receipt. Pure; never throws.
 */
export function checkAnchorChain(entries: readonly ReceiptCheckpoint[]): AnchorChainResult {
  const problems: string[] = [];
  const byN = new Map<number, ReceiptCheckpoint>();
  for (const e of entries) {
    if (byN.has(e.n)) problems.push(`checkpoint ${e.n} appears twice`);
    byN.set(e.n, e);
  }
  const max = Math.max(0, ...byN.keys());
  const runs = new Map<string, ReceiptCheckpoint>();
  let prev: ReceiptCheckpoint | undefined;
  for (let n = 1; n <= max; n++) {
    const e = byN.get(n);
    if (!e) {
      problems.push(
        `checkpoint ${n} is missing: the chain was cut (an entry deleted), runs it named cannot be checked`,
      );
      prev = undefined;
      continue;
    }
    let recomputed: string | null = null;
    try {
      recomputed = anchorLink(e.prev, e.n, e.run, e.closeSeq, e.receipt.head);
    } catch (err) {
      problems.push(`checkpoint ${n} (run ${e.run}): ${(err as Error).message}`);
    }
    if (recomputed !== null && recomputed !== e.anchor)
      problems.push(`checkpoint ${n} (run ${e.run}): its anchor does not recompute`);
    const want = n === 1 ? ANCHOR_GENESIS : prev?.anchor;
    if (want !== undefined && e.prev !== want)
      problems.push(
        `checkpoint ${n} (run ${e.run}) does not follow checkpoint ${n - 1}: the chain was forked or rewritten`,
      );
    const seen = runs.get(e.run);
    if (seen && seen.receipt.head !== e.receipt.head)
      problems.push(
        `run ${e.run} is anchored twice with different receipts (checkpoints ${seen.n} and ${n})`,
      );
    runs.set(e.run, e);
    prev = e;
  }
  const last = byN.get(max);
  return {
    ok: problems.length === 0,
    head: last ? { n: last.n, anchor: last.anchor } : null,
    runs,
    problems,
  };
}
