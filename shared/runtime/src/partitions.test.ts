import { describe, expect, it } from "vitest";
import {
  emptyLeaseTable,
  partitionAction,
  partitionOf,
  planLeases,
  type LeaseTable,
  type LeaseView,
  type PartitionState,
} from "./partitions.js";

/** A table from owners by partition ("-" free) and beats. */
function table(owners: string, beats: Record<string, number>, last = "", from: number[] = []) {
  const t = emptyLeaseTable(owners.length);
  [...owners].forEach((o, i) => {
    const l = last[i];
    t.partitions[i] = {
      owner: o === "-" ? null : o,
      last: l === undefined || l === "-" ? null : l,
      from: from[i] || null,
    };
  });
  t.beats = beats;
  return t;
}

function owners(t: LeaseTable): string {
  return t.partitions.map((p) => p.owner ?? "-").join("");
}

function view(v: Partial<LeaseView> & Pick<LeaseView, "me">): LeaseView {
  return {
    table: null,
    partitions: 4,
    live: new Set(),
    release: new Map(),
    draining: new Set(),
    ...v,
  };
}

describe("partition leases", () => {
  it.each<[string, LeaseView, string, number[], number[]]>([
    // name, view, owners after, claimed, to drain
    [
      "first replica, no table: claims every partition",
      view({ me: "1" }),
      "1111",
      [0, 1, 2, 3],
      [],
    ],
    [
      "alone again after a restart: keeps its partitions, claims nothing new",
      view({ me: "1", table: table("1111", { "1": 7 }) }),
      "1111",
      [],
      [],
    ],
    [
      "a second replica appears: the first drains half (the highest), claims nothing",
      view({ me: "1", table: table("1111", { "1": 7, "2": 1 }), live: new Set(["2"]) }),
      "1111",
      [],
      [3, 2],
    ],
    [
      "the second replica claims the free half only",
      view({ me: "2", table: table("11--", { "1": 8, "2": 1 }, "--11"), live: new Set(["1"]) }),
      "1122",
      [2, 3],
      [],
    ],
    [
      "a dead replica's partitions are freed and claimed by the survivor",
      view({ me: "1", table: table("1122", { "1": 9, "2": 4 }) }),
      "1111",
      [2, 3],
      [],
    ],
    [
      "draining already: not named again",
      view({
        me: "1",
        table: table("1111", { "1": 7, "2": 1 }),
        live: new Set(["2"]),
        draining: new Set([3, 2]),
      }),
      "1111",
      [],
      [],
    ],
    [
      "drained partitions are given up and not claimed back in the same write",
      view({
        me: "1",
        table: table("1111", { "1": 7, "2": 1 }),
        live: new Set(["2"]),
        draining: new Set([3, 2]),
        release: new Map([
          [2, 40],
          [3, 40],
        ]),
      }),
      "11--",
      [],
      [],
    ],
    [
      "claims prefer partitions it had before",
      view({
        me: "2",
        partitions: 4,
        table: table("1---", { "1": 3, "2": 2 }, "-122"),
        live: new Set(["1"]),
      }),
      "1-22",
      [2, 3],
      [],
    ],
    [
      "three replicas on 4 partitions: a share of 2, the third claims what is free",
      view({
        me: "3",
        table: table("11-2", { "1": 3, "2": 2 }, "--2-"),
        live: new Set(["1", "2"]),
      }),
      "1132",
      [2],
      [],
    ],
  ])("partition leases - %s", (_name, v, after, claimed, drain) => {
    const plan = planLeases(v);
    expect(owners(plan.table)).toBe(after);
    expect(plan.claims.map((c) => c.partition)).toEqual(claimed);
    expect(plan.drain).toEqual(drain);
    expect(plan.table.beats[v.me]).toBe((v.table?.beats[v.me] ?? 0) + 1);
  });

  it("partition leases - a claim names who had the partition and where to replay from", () => {
    const plan = planLeases(
      view({
        me: "2",
        table: table("1---", { "1": 3 }, "-111", [0, 40, 0, 0]),
        live: new Set(["1"]),
      }),
    );
    expect(plan.claims).toEqual([
      { partition: 1, last: "1", from: 40 },
      { partition: 2, last: "1", from: null },
    ]);
  });

  it("partition leases - a dead replica's beat is dropped and its partitions remember it", () => {
    const plan = planLeases(view({ me: "1", table: table("2222", { "1": 1, "2": 9 }) }));
    expect(plan.table.beats).toEqual({ "1": 2 });
    expect(plan.claims.every((c) => c.last === "2" && c.from === null)).toBe(true);
  });

  it("partition leases - leaving gives up what it releases, claims nothing and drops its beat", () => {
    const plan = planLeases(
      view({
        me: "1",
        table: table("1122", { "1": 4, "2": 4 }),
        live: new Set(["2"]),
        release: new Map([
          [0, 12],
          [1, 12],
        ]),
        leaving: true,
      }),
    );
    expect(owners(plan.table)).toBe("--22");
    expect(plan.table.partitions[0]).toEqual({ owner: null, last: "1", from: 12 });
    expect(plan.table.beats).toEqual({ "2": 4 });
    expect(plan.claims).toEqual([]);
  });

  it.each<[PartitionState, string]>([
    ["owned", "handle"],
    ["elsewhere", "skip"],
    ["unknown", "wait"],
    ["replaying", "wait"],
    ["draining", "wait"],
    ["unclaimed", "wait"],
  ])("partition leases - a message of a partition %s: %s", (state, action) => {
    expect(partitionAction(state)).toBe(action);
  });

  it("partition leases - a run's partition is stable and spreads runs over the partitions", () => {
    expect(partitionOf("run-1", 16)).toBe(partitionOf("run-1", 16));
    const counts = new Array<number>(16).fill(0);
    for (let i = 0; i < 1600; i++) counts[partitionOf(`r-${i}-x`, 16)]!++;
    expect(Math.min(...counts)).toBeGreaterThan(50);
    expect(Math.max(...counts)).toBeLessThan(150);
  });
});
