// `trias replicas`: who holds each agent identity's partitions (docs/scaling.md, section 2).
import type { KV } from "@nats-io/kv";
import { LeaseTableSchema, type LeaseTable } from "@trias/runtime";

export interface IdentityReplicas {
  identity: string;
  /** Replicas with a heartbeat in the table, by id. */
  replicas: string[];
  /** Partitions held, by replica id. */
  partitions: Record<string, number>;
  /** Partitions no replica holds (waiting for a claim). */
  free: number;
  total: number;
}

/** One identity's lease table, summed up. */
export function summarizeLeases(identity: string, t: LeaseTable): IdentityReplicas {
  const partitions: Record<string, number> = {};
  let free = 0;
  for (const p of t.partitions) {
    if (p.owner === null) free++;
    else partitions[p.owner] = (partitions[p.owner] ?? 0) + 1;
  }
  return {
    identity,
    replicas: Object.keys(t.beats).sort(),
    partitions,
    free,
    total: t.partitions.length,
  };
}

/** Every identity's lease table in the bucket, summed up, by identity name. */
export async function readReplicas(kv: KV): Promise<IdentityReplicas[]> {
  const out: IdentityReplicas[] = [];
  // A key renewed while the keys are listed comes again: each is read once.
  const keys = new Set<string>();
  for await (const key of await kv.keys()) keys.add(key);
  for (const key of keys) {
    const e = await kv.get(key);
    if (!e || e.length === 0) continue;
    const t = LeaseTableSchema.safeParse(e.json());
    if (t.success) out.push(summarizeLeases(key, t.data));
  }
  return out.sort((a, b) => a.identity.localeCompare(b.identity));
}

/** One line per identity: its replicas and what each holds. */
export function replicaLine(r: IdentityReplicas): string {
  const held = Object.entries(r.partitions)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([id, n]) => `replica ${id}: ${n}`)
    .join(", ");
  return `${r.identity.padEnd(14)} ${String(r.replicas.length).padStart(2)} live  ${held || "none held"}${r.free > 0 ? `, ${r.free} free` : ""} (of ${r.total} partitions)`;
}
