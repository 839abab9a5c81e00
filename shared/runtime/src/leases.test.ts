import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { Bus, KeySwap, LocalNatsServer } from "@trias/bus";
import { waitFor } from "@trias/testing";
import { silentLogger } from "./host.js";
import { PartitionKeeper } from "./leases.js";
import { LeaseTableSchema, partitionOf } from "./partitions.js";

const LEASE_MS = 600;
const PARTITIONS = 4;

// Lease keepers of one identity on a real server: what the table holds and what each
// replica does with a message, through claims, hand-overs, a death and a restart.
describe("partition keeper", () => {
  let server: LocalNatsServer;
  let bus: Bus;
  let kv: KV;
  let swap: KeySwap;
  const keepers: PartitionKeeper[] = [];
  const replays: {
    replica: string;
    partition: number;
    from: number | null;
    last: string | null;
  }[] = [];

  beforeAll(async () => {
    server = await LocalNatsServer.start();
    bus = await Bus.connect({ servers: server.url, name: "leases-test" });
    kv = await bus.kv("leases_test", { create: true });
    swap = await KeySwap.open(kv, bus.serverVersion);
  });
  afterAll(async () => {
    for (const k of keepers) await k.stop().catch(() => undefined);
    await bus?.drain();
    await server?.stop();
  });

  function keeper(replica: string, resumeAt = 100): PartitionKeeper {
    const k = new PartitionKeeper({
      kv: swap,
      identity: "executor",
      replica,
      partitions: PARTITIONS,
      leaseMs: LEASE_MS,
      log: silentLogger,
      replay: (partition, from, last) => {
        replays.push({ replica, partition, from, last });
        return Promise.resolve();
      },
      resumeAt: () => resumeAt,
    });
    keepers.push(k);
    return k;
  }

  async function owners(): Promise<(string | null)[]> {
    const e = await kv.get("executor");
    return LeaseTableSchema.parse(e?.json()).partitions.map((p) => p.owner);
  }

  /** A run id in each partition. */
  const runIn = Array.from({ length: PARTITIONS }, (_, p) => {
    for (let i = 0; ; i++) if (partitionOf(`run-${i}`, PARTITIONS) === p) return `run-${i}`;
  });

  it("partition keeper - alone, a first replica owns every partition, replays nothing, and handles every run", async () => {
    const one = keeper("1");
    await one.start();
    expect(await owners()).toEqual(["1", "1", "1", "1"]);
    expect(replays).toEqual([]);
    for (const run of runIn) {
      const t = await one.enter(run);
      expect(t.type).toBe("handle");
      if (t.type === "handle") t.done();
    }
  });

  it("partition keeper - a second replica gets half once the first has drained it, handed over from where the first left off; each run is handled by one", async () => {
    const one = keepers[0]!;
    // A message of each partition the first replica gives up (the highest) is being handled:
    // it keeps them until the handlers are done.
    const held = [await one.enter(runIn[2]!), await one.enter(runIn[3]!)];
    const two = keeper("2");
    await two.start();
    await new Promise((r) => setTimeout(r, 4 * LEASE_MS));
    expect(await owners()).toEqual(["1", "1", "1", "1"]);
    for (const t of held) if (t.type === "handle") t.done();
    await waitFor(
      "the partitions split two and two",
      async () => {
        const o = await owners();
        return o.filter((x) => x === "1").length === 2 && o.filter((x) => x === "2").length === 2;
      },
      10_000,
      50,
    );
    const o = await owners();
    for (const [p, run] of runIn.entries()) {
      const [a, b] = [await one.enter(run), await two.enter(run)];
      const mine = o[p] === "1" ? a : b;
      const theirs = o[p] === "1" ? b : a;
      expect(mine.type, `partition ${p}`).toBe("handle");
      expect(theirs.type, `partition ${p}`).toBe("skip");
      if (mine.type === "handle") mine.done();
    }
    // The second replica replayed each partition it took from where the first gave it up.
    expect(replays.filter((r) => r.replica === "2")).toEqual(
      o.flatMap((x, p) =>
        x === "2" ? [{ replica: "2", partition: p, from: 100, last: "1" }] : [],
      ),
    );
  });

  it("partition keeper - a replica that stops renewing (a crash) loses its partitions to the other after the lease, with a replay from its durables", async () => {
    const two = keepers[1]!;
    const before = await owners();
    // No more renewals and no goodbye: as a SIGKILL leaves it.
    (two as unknown as { renew: () => Promise<void> }).renew = () => Promise.resolve();
    await waitFor(
      "the first replica owns every partition",
      async () => (await owners()).every((x) => x === "1"),
      10_000,
      50,
    );
    const taken = before.flatMap((x, p) => (x === "2" ? [p] : []));
    expect(replays.filter((r) => r.replica === "1" && taken.includes(r.partition))).toEqual(
      taken.map((p) => ({ replica: "1", partition: p, from: null, last: "2" })),
    );
    keepers.splice(1, 1);
  });

  it("partition keeper - a replica restarted within its lease adopts its own partitions at once, replaying nothing", async () => {
    // The first process dies (no more renewals) and its successor starts within the lease.
    (keepers[0] as unknown as { renew: () => Promise<void> }).renew = () => Promise.resolve();
    const replayed = replays.length;
    const again = keeper("1");
    await again.start();
    expect(again.owned()).toEqual([0, 1, 2, 3]);
    expect(replays.length).toBe(replayed);
    for (const run of runIn) {
      const t = await again.enter(run);
      expect(t.type).toBe("handle");
      if (t.type === "handle") t.done();
    }
  });

  it("partition keeper - stopping gives every partition up at once, naming where the next owner replays from", async () => {
    const again = keepers[1]!;
    await again.stop();
    const t = LeaseTableSchema.parse((await kv.get("executor"))?.json());
    expect(t.partitions.every((p) => p.owner === null && p.last === "1" && p.from === 100)).toBe(
      true,
    );
    expect(t.beats).toEqual({});
    expect((await again.enter(runIn[0]!)).type).toBe("defer");
  });
});
