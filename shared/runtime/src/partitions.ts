// Replicas of a role: work partitioned by run, partitions owned through a lease table in KV
// (docs/scaling.md, section 2). This file holds the pure rules (which partition a run is in,
// what a replica claims, drains and gives up, what it does with a message); the keeper that
// reads and writes the table is leases.ts.
import { z } from "zod";

/**
 * Partitions a role's work is split into. Fixed when the first replica writes its identity's
 * lease table (the table keeps it): changing it would move runs between owners.
 * @default 16
 */
export const DEFAULT_PARTITIONS = 16;

/**
 * The partition of a run: FNV-1a (32 bits) of the run id, modulo the partition count. Every
 * replica computes the same one from the subject's last token, without decoding the message.
 */
export function partitionOf(run: string, partitions: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < run.length; i++) {
    h ^= run.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0) % partitions;
}

export const PartitionLeaseSchema = z.object({
  /** The replica that handles this partition's runs, or null while it is free. */
  owner: z.string().nullable(),
  /** The replica that handled it before (whose durables say what it left unhandled). */
  last: z.string().nullable(),
  /**
   * Where a new owner replays from, written by a replica that gave the partition up after
   * draining it (the oldest message its consumers had not settled); null: from the last
   * owner's durables' ack floors (it died, or this is its first owner).
   */
  from: z.number().int().positive().nullable(),
});
export type PartitionLease = z.infer<typeof PartitionLeaseSchema>;

/** One identity's lease table: the value of its key in the leases bucket. */
export const LeaseTableSchema = z.object({
  partitions: z.array(PartitionLeaseSchema).min(1),
  /**
   * Each live replica's heartbeat counter, bumped at every renewal. Replicas judge each
   * other alive by seeing it change on their own clock, so no two clocks are compared.
   */
  beats: z.record(z.string(), z.number().int().nonnegative()),
});
export type LeaseTable = z.infer<typeof LeaseTableSchema>;

export function emptyLeaseTable(partitions: number): LeaseTable {
  return {
    partitions: Array.from({ length: partitions }, () => ({ owner: null, last: null, from: null })),
    beats: {},
  };
}

export interface LeaseView {
  /** This replica's id. */
  me: string;
  /** The table as read (null: no table yet for this identity). */
  table: LeaseTable | null;
  /** Partition count for a new table. */
  partitions: number;
  /** Other replicas seen alive (their beat changed within the lease, on this replica's clock). */
  live: ReadonlySet<string>;
  /** Partitions this replica drained and now gives up, each with where the next owner replays from. */
  release: ReadonlyMap<number, number>;
  /** Partitions this replica is draining already (it keeps them until drained). */
  draining: ReadonlySet<number>;
  /** This replica stops: it gives up what `release` names, claims nothing and drops its beat. */
  leaving?: boolean;
}

export interface LeasePlan {
  /** The table to write (compare-and-set on the revision read). */
  table: LeaseTable;
  /** Partitions claimed by this write, with who had them and where to replay from. */
  claims: { partition: number; last: string | null; from: number | null }[];
  /** Partitions this replica should start draining (more than its share). */
  drain: number[];
}

/**
 * One renewal of a replica's leases: bump its beat, free the partitions of replicas no
 * longer alive, give up what it drained, claim free partitions up to its share
 * (ceil(partitions / live replicas)), preferring those it had before, and name what it
 * holds above its share so that it drains them before giving them up.
 */
export function planLeases(v: LeaseView): LeasePlan {
  const t: LeaseTable = structuredClone(v.table ?? emptyLeaseTable(v.partitions));
  const alive = new Set([...v.live, v.me]);
  t.beats[v.me] = (t.beats[v.me] ?? 0) + 1;
  for (const [i, from] of v.release) {
    if (t.partitions[i]?.owner === v.me) t.partitions[i] = { owner: null, last: v.me, from };
  }
  if (v.leaving) alive.delete(v.me);
  for (const id of Object.keys(t.beats)) if (!alive.has(id)) delete t.beats[id];
  t.partitions.forEach((p, i) => {
    if (p.owner !== null && !alive.has(p.owner))
      t.partitions[i] = { owner: null, last: p.owner, from: null };
  });
  if (v.leaving) return { table: t, claims: [], drain: [] };
  const share = Math.ceil(t.partitions.length / alive.size);
  const mine = t.partitions.flatMap((p, i) => (p.owner === v.me ? [i] : []));
  const draining = mine.filter((i) => v.draining.has(i)).length;
  const drain = mine
    .filter((i) => !v.draining.has(i))
    .reverse()
    .slice(0, Math.max(0, mine.length - draining - share));
  const claims: LeasePlan["claims"] = [];
  if (mine.length < share) {
    const free = t.partitions
      .flatMap((p, i) => (p.owner === null && !v.release.has(i) ? [i] : []))
      .sort((a, b) => sticky(t, b, v.me) - sticky(t, a, v.me) || a - b)
      .slice(0, share - mine.length);
    for (const i of free) {
      const p = t.partitions[i]!;
      claims.push({ partition: i, last: p.last, from: p.from });
      t.partitions[i] = { owner: v.me, last: p.last, from: null };
    }
  }
  return { table: t, claims, drain };
}

function sticky(t: LeaseTable, i: number, me: string): number {
  return t.partitions[i]?.last === me ? 1 : 0;
}

/** What a replica knows of one partition at the moment a message of it arrives. */
export type PartitionState =
  /** Before the first renewal, or leases not renewed for half the lease: do not decide yet. */
  | "unknown"
  | "owned"
  /** Owned, but the messages the last owner left are still being replayed. */
  | "replaying"
  /** Owned, being given up: new messages wait, then go to the next owner. */
  | "draining"
  /** Another replica owns it, or it is free and its last owner's durables hold what was left. */
  | "elsewhere"
  /** Free and never owned: no durable holds its messages for a replay, so they wait for a claim. */
  | "unclaimed";

/** What the host does with a message of a partition: handle it, leave it to the owner, or wait. */
export type PartitionAction = "handle" | "skip" | "wait";

export function partitionAction(s: PartitionState): PartitionAction {
  switch (s) {
    case "owned":
      return "handle";
    case "elsewhere":
      return "skip";
    case "unknown":
    case "replaying":
    case "draining":
    case "unclaimed":
      return "wait";
  }
}
