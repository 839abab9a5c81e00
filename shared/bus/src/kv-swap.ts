import { Bucket, type KV } from "@nats-io/kv";
import { TriasError } from "@trias/protocol";

/**
 * The first nats-server release that checks a key's expected revision
 * (Nats-Expected-Last-Subject-Sequence above 0) as part of the replicated write: 2.9.21 (the
 * fix of nats-server issue 4320; read in its source, docs/scaling.md section 1). Before it, a
 * replicated stream's leader checked such a revision only against what it had stored, and
 * concurrent writes from one revision were all stored.
 */
export const KEY_REVISION_CHECK_SINCE = [2, 9, 21] as const;

/**
 * Whether a write with the key's expected revision `revision` excludes every other writer
 * of that revision, on a bucket of `replicas` replicas served by `serverVersion`: one server
 * orders writes itself (R1); expected revision 0 ("no message on the key": `createExact`) is
 * checked when the write is applied, in the log's order, on every release; any other
 * revision only from 2.9.21 on. Measured on 2.9.10 at R3 (five writers, 50 rounds): from
 * revision 0 exactly one stored each round, from a revision above 0 all five in 49 to 50.
 * A version that cannot be read counts as old (the safe answer).
 */
export function keyRevisionCheckHolds(
  serverVersion: string,
  replicas: number,
  revision: number,
): boolean {
  if (replicas <= 1 || revision === 0) return true;
  const m = /^v?(\d+)\.(\d+)\.(\d+)/.exec(serverVersion);
  if (!m) return false;
  const have = [Number(m[1]), Number(m[2]), Number(m[3])];
  for (const [i, want] of KEY_REVISION_CHECK_SINCE.entries()) {
    if (have[i]! !== want) return have[i]! > want;
  }
  return true;
}

function bucketOf(kv: KV, what: string): Bucket {
  if (!(kv instanceof Bucket))
    throw new TriasError(
      "internal",
      `${what} needs a bucket opened through Bus.kv (@nats-io/kv), not another KV`,
    );
  return kv;
}

/**
 * Store `value` under `key` only if the key has no message at all: an exclusive claim that
 * holds between processes on a replicated bucket (R3) on every nats-server release, a
 * leader change included. The expected revision 0 (Nats-Expected-Last-Subject-Sequence: 0)
 * is checked when the write is applied, in the replicated log's order, on every node; at R3
 * on nats-server 2.9.10, of five concurrent creates of one key exactly one was stored, and
 * only its writer was told it won, in each of 50 rounds (docs/scaling.md, section 1).
 *
 * Unlike `KV.create`, a key that holds a delete or purge marker is not claimed over: that
 * fallback is an update from the marker's revision, which before nats-server 2.9.21 the
 * leader checks without the writes in flight (at R3 all five concurrent re-creates of a
 * deleted key were stored in 49 rounds of 50). A key removed by the bucket's max age has no
 * message and can be claimed again. Returns the stored revision; a claim that lost throws
 * what `isRevisionConflict` recognises.
 */
export async function createExact(kv: KV, key: string, value: Uint8Array): Promise<number> {
  const b = bucketOf(kv, "createExact");
  const ek = b.encodeKey(key);
  b.validateKey(ek);
  const ack = await b.js.publish(b.subjectForKey(ek, true), value, {
    expect: { lastSubjectSequence: 0 },
  });
  return ack.seq;
}

/**
 * Store `value` under `key` only if the bucket's last write is still `revision`: a
 * compare-and-set that holds on a replicated bucket, for a bucket that holds this one key.
 *
 * `KV.update` sends the key's expected revision (Nats-Expected-Last-Subject-Sequence), which
 * before nats-server 2.9.21 a replicated stream's leader checks against what it has stored,
 * before the write is replicated and not counting the writes still in flight: on three nodes
 * (2.9.10), of five concurrent updates from one revision, more than one was stored (each
 * overwriting the last, each writer told it won) in 49 rounds of 50 (docs/scaling.md,
 * section 1; `keyRevisionCheckHolds` says where it is safe). The stream's expected last
 * sequence (Nats-Expected-Last-Sequence) is checked when the write is applied: exactly one of
 * them is stored, at R1 and at R3. In a bucket whose only key is `key`, the stream's last
 * sequence is that key's revision. A write that lost throws what `isRevisionConflict`
 * recognises.
 */
export async function swapSoleKey(
  kv: KV,
  key: string,
  value: Uint8Array,
  revision: number,
): Promise<number> {
  const b = bucketOf(kv, "swapSoleKey");
  const ack = await b.js.publish(b.subjectForKey(b.encodeKey(key), true), value, {
    expect: { lastSequence: revision },
  });
  return ack.seq;
}

/** A key's value as read for a compare-and-set, and what the write must expect. */
export interface SwapRead {
  /** The key's value, or null when it has none (never written, or a delete marker). */
  value: Uint8Array | null;
  /** Passed back to `KeySwap.write`: the key's revision, or the bucket's last sequence. */
  expect: number;
}

/**
 * Compare-and-set on one key of a bucket that holds several (the partition lease tables, the
 * routers' rate windows), exact between processes on any server and any replica count. Where
 * `keyRevisionCheckHolds` (R1, or nats-server 2.9.21 and later) the write expects the key's
 * revision, as `KV.update` does; elsewhere it expects the bucket's last sequence, read before
 * the key: a write to any key of the bucket since makes it conflict, and the caller reads
 * again (what `swapSoleKey` does for a bucket of one key, at the cost of conflicts between
 * keys). A write that lost throws what `isRevisionConflict` recognises.
 */
export class KeySwap {
  readonly #b: Bucket;
  /** Whether the key's own revision is checked exactly here (else the bucket's last sequence). */
  readonly byKey: boolean;

  private constructor(b: Bucket, byKey: boolean) {
    this.#b = b;
    this.byKey = byKey;
  }

  /** For `kv` on a server of `serverVersion` (Bus.serverVersion): one stream info request. */
  static async open(kv: KV, serverVersion: string): Promise<KeySwap> {
    const b = bucketOf(kv, "KeySwap");
    const replicas = (await b.status()).streamInfo.config.num_replicas;
    return new KeySwap(b, keyRevisionCheckHolds(serverVersion, replicas, 1));
  }

  /** Always by the bucket's last sequence: what `open` picks where a key's revision is not checked exactly. */
  static byBucket(kv: KV): KeySwap {
    return new KeySwap(bucketOf(kv, "KeySwap"), false);
  }

  async read(key: string): Promise<SwapRead> {
    const last = this.byKey ? 0 : (await this.#b.status()).streamInfo.state.last_seq;
    const e = await this.#b.get(key);
    const value = e !== null && e.length > 0 ? e.value : null;
    return { value, expect: this.byKey ? (e?.revision ?? 0) : last };
  }

  async write(key: string, value: Uint8Array, expect: number): Promise<number> {
    const ack = await this.#b.js.publish(
      this.#b.subjectForKey(this.#b.encodeKey(key), true),
      value,
      {
        expect: this.byKey ? { lastSubjectSequence: expect } : { lastSequence: expect },
      },
    );
    return ack.seq;
  }
}
