// The lease keeper: one replica's side of its identity's lease table (docs/scaling.md,
// section 2). The rules are pure, in partitions.ts; this file renews, applies a plan, and
// tells the host what to do with each message.
import { isRevisionConflict, type KeySwap } from "@trias/bus";
import type { Logger } from "./host.js";
import {
  LeaseTableSchema,
  partitionAction,
  partitionOf,
  planLeases,
  type LeaseTable,
  type PartitionAction,
  type PartitionState,
} from "./partitions.js";

/**
 * How long a replica's leases last without a renewal: another replica takes over a dead
 * one's partitions after seeing its heartbeat unchanged this long (on its own clock). A
 * replica that has not renewed for half of it stops handling (its messages wait) until it
 * knows again what it owns, so two replicas never handle one partition at once unless a
 * clock runs at twice another's rate.
 * @default 10_000 ms (TRIAS_LEASE_MS)
 */
export const DEFAULT_LEASE_MS = 10_000;

/** Renewals per lease: a replica writes its heartbeat every lease / RENEWALS_PER_LEASE. */
const RENEWALS_PER_LEASE = 4;

/** Compare-and-set attempts of one renewal before it waits for the next tick. */
const RENEW_ATTEMPTS = 5;

export interface KeeperOptions {
  /** The leases bucket (LEASES_BUCKET): compare-and-set exact at any replica count. */
  kv: KeySwap;
  /** The identity whose partitions these are: the key of its table. */
  identity: string;
  /** This replica's id ("1", "2", ...). */
  replica: string;
  /** Partition count for a new table. */
  partitions: number;
  /** @default DEFAULT_LEASE_MS */
  leaseMs?: number;
  log: Logger;
  now?: () => number;
  /**
   * Hand the messages of a claimed partition that the last owner may have left unhandled to
   * the handlers (from `from`, or from `last`'s durables' ack floors when `from` is null).
   */
  replay: (partition: number, from: number | null, last: string | null) => Promise<void>;
  /** The oldest message this replica's consumers have not settled: where a next owner replays from. */
  resumeAt: () => number;
  /** Told of partitions this replica no longer owns (its caches of their runs are stale). */
  onLost?: (partitions: readonly number[]) => void;
}

/**
 * One replica's leases. `enter(run)` says whether a message of that run is this replica's
 * to handle (resolving when that is known), `start` makes the first renewal, `stop` gives
 * every partition up so that the others take over at once instead of after the lease.
 */
export class PartitionKeeper {
  readonly replica: string;
  readonly #o: KeeperOptions;
  readonly #leaseMs: number;
  readonly #now: () => number;
  #table: LeaseTable | null = null;
  #partitions: number;
  #lastOk = Number.NEGATIVE_INFINITY;
  readonly #owned = new Set<number>();
  readonly #replaying = new Set<number>();
  readonly #draining = new Set<number>();
  #running: number[];
  /** Heartbeats of the other replicas, and when (on this clock) each last changed. */
  readonly #seen = new Map<string, { beat: number; at: number }>();
  #timer: NodeJS.Timeout | null = null;
  #renewing: Promise<void> | null = null;
  #stopped = false;
  #stopping = false;
  #changed: { promise: Promise<void>; resolve: () => void };

  constructor(o: KeeperOptions) {
    this.#o = o;
    this.replica = o.replica;
    this.#leaseMs = o.leaseMs ?? DEFAULT_LEASE_MS;
    this.#now = o.now ?? Date.now;
    this.#partitions = o.partitions;
    this.#running = new Array<number>(o.partitions).fill(0);
    this.#changed = signal();
  }

  /** First renewal, then one every lease / RENEWALS_PER_LEASE. */
  async start(): Promise<void> {
    await this.renew();
    this.#timer = setInterval(
      () => void this.renew(),
      Math.max(50, Math.floor(this.#leaseMs / RENEWALS_PER_LEASE)),
    );
    this.#timer.unref();
  }

  /** The identity's partition count (the table's, once read). */
  get partitionCount(): number {
    return this.#partitions;
  }

  /** Partitions owned and ready (for logs and tests). */
  owned(): number[] {
    return [...this.#owned].filter((p) => !this.#replaying.has(p)).sort((a, b) => a - b);
  }

  /** Whether a run's partition is owned here now (an agent's cache of a run elsewhere is stale). */
  owns(run: string): boolean {
    return this.#owned.has(partitionOf(run, this.#partitions));
  }

  state(partition: number): PartitionState {
    if (this.#stopped || this.#now() - this.#lastOk > this.#leaseMs / 2) return "unknown";
    if (this.#owned.has(partition)) {
      if (this.#replaying.has(partition)) return "replaying";
      return this.#draining.has(partition) ? "draining" : "owned";
    }
    const p = this.#table?.partitions[partition];
    if (!p) return "unknown";
    return p.owner !== null || p.last !== null ? "elsewhere" : "unclaimed";
  }

  /**
   * Whether the message of `run` is this replica's: `handle` (call `done` once handled),
   * `skip` (ack it: its partition's owner handles it or replays it), or `defer` (nak it:
   * this replica is stopping and gives the partition up with the message unsettled). Waits
   * while that is not known yet (see PartitionState).
   */
  async enter(run: string): Promise<Ticket> {
    const p = partitionOf(run, this.#partitions);
    for (;;) {
      if (this.#stopping) return { type: "defer" };
      const action: PartitionAction = partitionAction(this.state(p));
      if (action === "skip") return { type: "skip" };
      if (action === "handle") {
        this.#running[p] = (this.#running[p] ?? 0) + 1;
        return {
          type: "handle",
          done: () => {
            this.#running[p] = (this.#running[p] ?? 1) - 1;
          },
        };
      }
      // Woken by the next change, and at least once a renewal period (a lapse of the lease
      // is a change of time, not of state).
      await Promise.race([
        this.#changed.promise,
        new Promise((r) => setTimeout(r, this.#leaseMs / RENEWALS_PER_LEASE).unref()),
      ]);
    }
  }

  /** One renewal (one at a time): read the table, plan, write it back with compare-and-set. */
  renew(): Promise<void> {
    this.#renewing ??= this.#renew().finally(() => {
      this.#renewing = null;
    });
    return this.#renewing;
  }

  async #renew(): Promise<void> {
    if (this.#stopped) return;
    try {
      await this.#write();
    } catch (e) {
      this.#o.log.warn(
        { err: String((e as Error)?.message ?? e), identity: this.#o.identity },
        "could not renew partition leases; will retry",
      );
    }
  }

  /**
   * Read, plan and write the table, again while another replica's write comes between (a
   * revision conflict), up to RENEW_ATTEMPTS; any other failure, or the last conflict, throws.
   */
  async #write(release?: ReadonlyMap<number, number>, leaving = false): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#renewOnce(release ?? this.#drained(), leaving);
      } catch (e) {
        if (!isRevisionConflict(e) || attempt >= RENEW_ATTEMPTS) throw e;
      }
    }
  }

  async #renewOnce(release: ReadonlyMap<number, number>, leaving: boolean): Promise<void> {
    const read = await this.#o.kv.read(this.#o.identity);
    const now = this.#now();
    const table = read.value ? this.#parse(read.value) : null;
    if (table) this.#partitions = table.partitions.length;
    const live = new Set<string>();
    for (const [id, beat] of Object.entries(table?.beats ?? {})) {
      if (id === this.replica) continue;
      const s = this.#seen.get(id);
      if (!s || s.beat !== beat) this.#seen.set(id, { beat, at: now });
      if (now - (this.#seen.get(id)?.at ?? now) < this.#leaseMs) live.add(id);
    }
    const plan = planLeases({
      me: this.replica,
      table,
      partitions: this.#partitions,
      live,
      release,
      draining: this.#draining,
      leaving,
    });
    const bytes = new TextEncoder().encode(JSON.stringify(plan.table));
    await this.#o.kv.write(this.#o.identity, bytes, read.expect);
    this.#apply(plan.table, plan.claims, plan.drain, release, now);
  }

  #parse(bytes: Uint8Array): LeaseTable | null {
    try {
      return LeaseTableSchema.parse(JSON.parse(new TextDecoder().decode(bytes)));
    } catch (e) {
      // Only this identity's replicas write it (nats-config.ts): a table it cannot read is
      // rewritten from scratch, which frees every partition for a claim with a full replay.
      this.#o.log.error(
        { identity: this.#o.identity, err: String((e as Error)?.message ?? e) },
        "partition lease table unreadable; starting a new one",
      );
      return null;
    }
  }

  /** Drained partitions (none of their messages being handled) to give up, with where to replay from. */
  #drained(): Map<number, number> {
    const out = new Map<number, number>();
    for (const p of this.#draining)
      if ((this.#running[p] ?? 0) === 0) out.set(p, this.#o.resumeAt());
    return out;
  }

  #apply(
    table: LeaseTable,
    claims: { partition: number; last: string | null; from: number | null }[],
    drain: number[],
    released: ReadonlyMap<number, number>,
    now: number,
  ): void {
    this.#table = table;
    this.#lastOk = now;
    if (this.#running.length < table.partitions.length)
      this.#running = [...this.#running, ...new Array<number>(table.partitions.length).fill(0)];
    const lost: number[] = [];
    for (const p of this.#owned) {
      if (table.partitions[p]?.owner !== this.replica) {
        this.#owned.delete(p);
        this.#draining.delete(p);
        if (!released.has(p)) lost.push(p);
      }
    }
    // Partitions the table gives this replica that this process did not hold: its own from
    // before a restart (its durables hold what it left; nothing to replay).
    table.partitions.forEach((p, i) => {
      if (p.owner === this.replica) this.#owned.add(i);
    });
    for (const p of drain) this.#draining.add(p);
    for (const c of claims) {
      this.#owned.add(c.partition);
      // Never owned: the first replica's durable (delivering from the stream's start) holds
      // its messages; a later replica's claim replays them from that durable's ack floor.
      if (c.last === null && c.from === null && this.replica === "1") continue;
      this.#replaying.add(c.partition);
      void this.#replay(c.partition, c.from, c.last);
    }
    if (claims.length > 0 || drain.length > 0 || released.size > 0 || lost.length > 0)
      this.#o.log.info(
        {
          identity: this.#o.identity,
          replica: this.replica,
          claimed: claims.map((c) => c.partition),
          draining: drain,
          released: [...released.keys()],
          lost,
          owned: [...this.#owned].sort((a, b) => a - b),
        },
        "partition leases changed",
      );
    if (lost.length > 0 || released.size > 0) this.#o.onLost?.([...lost, ...released.keys()]);
    this.#notify();
  }

  async #replay(partition: number, from: number | null, last: string | null): Promise<void> {
    for (let attempt = 1; this.#owned.has(partition) && !this.#stopped; attempt++) {
      try {
        await this.#o.replay(partition, from, last);
        break;
      } catch (e) {
        this.#o.log.warn(
          { partition, attempt, err: String((e as Error)?.message ?? e) },
          "could not replay a claimed partition's messages yet; retrying",
        );
        await new Promise((r) => setTimeout(r, Math.min(5_000, 200 * attempt)));
      }
    }
    this.#replaying.delete(partition);
    this.#notify();
  }

  #notify(): void {
    const c = this.#changed;
    this.#changed = signal();
    c.resolve();
  }

  /** Stop taking messages: those waiting to know their partition's state are deferred (nak'd). */
  beginStop(): void {
    this.#stopping = true;
    this.#notify();
  }

  /**
   * Give every partition up (a drain on SIGTERM), once the consumers have stopped and the
   * handlers finished: the next owners replay from the oldest message left unsettled here,
   * at once instead of after the lease.
   */
  async stop(): Promise<void> {
    this.beginStop();
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#renewing;
    const release = new Map([...this.#owned].map((p) => [p, this.#o.resumeAt()]));
    if (release.size > 0) {
      try {
        await this.#write(release, true);
      } catch (e) {
        this.#o.log.warn(
          { err: String((e as Error)?.message ?? e) },
          "could not give partitions up on stop; the others take them over when the lease lapses",
        );
      }
    }
    this.#stopped = true;
    this.#notify();
  }
}

/** What the host does with one message (see PartitionKeeper.enter). */
export type Ticket = { type: "handle"; done: () => void } | { type: "skip" } | { type: "defer" };

function signal(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}
