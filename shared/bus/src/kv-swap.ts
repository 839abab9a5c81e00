import { Bucket, type KV } from "@nats-io/kv";
import { TriasError } from "@trias/protocol";

/**
 * Store `value` under `key` only if the bucket's last write is still `revision`: a
 * compare-and-set that holds on a replicated bucket, for a bucket that holds this one key.
 *
 * `KV.update` sends the key's expected revision (Nats-Expected-Last-Subject-Sequence), which
 * a replicated stream's leader checks against what it has stored, before the write is
 * replicated and not counting the writes still in flight: on three nodes, of five concurrent
 * updates from one revision, more than one was stored (each overwriting the last, each writer
 * told it won) in 49 rounds of 50 (docs/scaling.md, section 1). The stream's expected last
 * sequence (Nats-Expected-Last-Sequence) is checked against the writes the leader has already
 * proposed: exactly one of them is stored, at R1 and at R3. In a bucket whose only key is
 * `key`, the stream's last sequence is that key's revision. A write that lost throws what
 * `isRevisionConflict` recognises.
 */
export async function swapSoleKey(
  kv: KV,
  key: string,
  value: Uint8Array,
  revision: number,
): Promise<number> {
  if (!(kv instanceof Bucket))
    throw new TriasError(
      "internal",
      "swapSoleKey needs a bucket opened through Bus.kv (@nats-io/kv), not another KV",
    );
  const ack = await kv.js.publish(kv.subjectForKey(kv.encodeKey(key), true), value, {
    expect: { lastSequence: revision },
  });
  return ack.seq;
}
