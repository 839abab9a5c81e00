import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { TriasError } from "@trias/protocol";
import {
  Bus,
  KeySwap,
  LocalNatsServer,
  createExact,
  isRevisionConflict,
  keyRevisionCheckHolds,
  swapSoleKey,
} from "./index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

// One server for every write primitive below.
let server: LocalNatsServer;
let bus: Bus;
beforeAll(async () => {
  server = await LocalNatsServer.start();
  bus = await Bus.connect({ servers: server.url, name: "kv-swap-test" });
});
afterAll(async () => {
  await bus?.drain();
  await server?.stop();
});

/** How a write ended: stored, lost to another (a revision conflict), or failed otherwise. */
async function outcome(p: Promise<unknown>): Promise<"stored" | "conflict" | "other"> {
  try {
    await p;
    return "stored";
  } catch (e) {
    return isRevisionConflict(e) ? "conflict" : "other";
  }
}

async function conflict(p: Promise<unknown>): Promise<boolean> {
  return (await outcome(p)) === "conflict";
}

describe("swapSoleKey", () => {
  it("stores at the current revision and refuses a stale one as a revision conflict", async () => {
    const kv = await bus.kv("swap_sole", { create: true });
    const r1 = await kv.put("state", enc.encode("one"));
    const r2 = await swapSoleKey(kv, "state", enc.encode("two"), r1);
    expect(r2).toBe(r1 + 1);
    expect(await conflict(swapSoleKey(kv, "state", enc.encode("stale"), r1))).toBe(true);
    const e = await kv.get("state");
    expect(e?.revision).toBe(r2);
    expect(dec.decode(e?.value)).toBe("two");
  });

  it("of concurrent swaps from one revision, stores exactly one", async () => {
    const kv = await bus.kv("swap_race", { create: true });
    const r = await kv.put("state", enc.encode("0"));
    const tries = await Promise.allSettled(
      [1, 2, 3, 4, 5].map((i) => swapSoleKey(kv, "state", enc.encode(String(i)), r)),
    );
    expect(tries.filter((t) => t.status === "fulfilled")).toHaveLength(1);
    for (const t of tries)
      if (t.status === "rejected") expect(isRevisionConflict(t.reason)).toBe(true);
  });

  it("conflicts when the bucket holds another key (the last write is not this key's)", async () => {
    const kv = await bus.kv("swap_two_keys", { create: true });
    const r = await kv.put("state", enc.encode("mine"));
    await kv.put("other", enc.encode("theirs"));
    expect(await conflict(swapSoleKey(kv, "state", enc.encode("next"), r))).toBe(true);
  });

  it("refuses a KV that is not a JetStream bucket", async () => {
    const fake = {} as KV;
    await expect(swapSoleKey(fake, "state", enc.encode("x"), 1)).rejects.toBeInstanceOf(TriasError);
  });
});

describe("createExact", () => {
  it("claims a key that has no message, once; a second claim is a revision conflict", async () => {
    const kv = await bus.kv("create_exact", { create: true });
    const r = await createExact(kv, "slot", enc.encode("first"));
    expect(await outcome(createExact(kv, "slot", enc.encode("second")))).toBe("conflict");
    const e = await kv.get("slot");
    expect(e?.revision).toBe(r);
    expect(dec.decode(e?.value)).toBe("first");
  });

  it("of five concurrent claims of one key, stores exactly one, and the others conflict", async () => {
    const kv = await bus.kv("create_exact_race", { create: true });
    const tries = await Promise.all(
      [1, 2, 3, 4, 5].map((i) => outcome(createExact(kv, "slot", enc.encode(String(i))))),
    );
    expect(tries.filter((t) => t === "stored")).toHaveLength(1);
    expect(tries.filter((t) => t === "conflict")).toHaveLength(4);
  });

  it("does not claim over a delete marker (KV.create would, with a leader-only check)", async () => {
    const kv = await bus.kv("create_exact_deleted", { create: true });
    await kv.put("slot", enc.encode("old"));
    await kv.delete("slot");
    expect(await outcome(createExact(kv, "slot", enc.encode("again")))).toBe("conflict");
    expect(await outcome(kv.create("slot", enc.encode("again")))).toBe("stored");
  });

  it("refuses a key the bucket cannot hold, and a KV that is not a JetStream bucket", async () => {
    const kv = await bus.kv("create_exact_keys", { create: true });
    await expect(createExact(kv, "no spaces", enc.encode("x"))).rejects.toThrow();
    await expect(createExact({} as KV, "slot", enc.encode("x"))).rejects.toBeInstanceOf(TriasError);
  });

  it("knows the server it reached", () => {
    expect(bus.serverVersion).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("keyRevisionCheckHolds", () => {
  it.each([
    // [server version, replicas, expected revision, holds]
    ["2.9.10", 1, 7, true], // one server orders the writes itself
    ["2.9.10", 3, 0, true], // revision 0 is checked when applied, on every release
    ["2.9.10", 3, 7, false], // checked by the leader without the writes in flight
    ["2.9.20", 3, 7, false],
    ["2.9.21", 3, 7, true], // the fix of nats-server issue 4320
    ["2.10.0", 3, 7, true],
    ["2.12.1-beta.2", 5, 7, true],
    ["v2.11.0", 3, 7, true],
    ["3.0.0", 3, 7, true],
    ["1.99.99", 3, 7, false],
    ["0.0.0", 3, 7, false], // not known yet: the safe answer
    ["garbage", 3, 7, false],
    ["garbage", 3, 0, true],
  ] as const)("%s at R%i from revision %i: %s", (version, replicas, revision, holds) => {
    expect(keyRevisionCheckHolds(version, replicas, revision)).toBe(holds);
  });
});

describe("KeySwap", () => {
  it.each([
    ["by key (R1: the key's revision is checked exactly)", "open"],
    ["by the bucket's last sequence", "byBucket"],
  ] as const)(
    "%s: of five concurrent writes from one read, exactly one is stored",
    async (_n, mode) => {
      const kv = await bus.kv(`key_swap_${mode}`, { create: true });
      const swap =
        mode === "open" ? await KeySwap.open(kv, bus.serverVersion) : KeySwap.byBucket(kv);
      expect(swap.byKey).toBe(mode === "open");
      await kv.put("other", enc.encode("x"));
      for (let round = 0; round < 5; round++) {
        const read = await swap.read("table");
        const results = await Promise.all(
          [0, 1, 2, 3, 4].map((i) =>
            outcome(swap.write("table", enc.encode(`${round}-${i}`), read.expect)),
          ),
        );
        expect(
          results.filter((r) => r === "stored"),
          `round ${round}`,
        ).toHaveLength(1);
        expect(
          results.filter((r) => r === "conflict"),
          `round ${round}`,
        ).toHaveLength(4);
      }
    },
  );

  it("by the bucket's last sequence: a write to another key since the read makes it conflict; by key it does not", async () => {
    const kv = await bus.kv("key_swap_other", { create: true });
    for (const [swap, conflicts] of [
      [KeySwap.byBucket(kv), true],
      [await KeySwap.open(kv, bus.serverVersion), false],
    ] as const) {
      const read = await swap.read("table");
      await kv.put("another", enc.encode("meanwhile"));
      expect(await outcome(swap.write("table", enc.encode("v"), read.expect))).toBe(
        conflicts ? "conflict" : "stored",
      );
    }
    const read = await KeySwap.byBucket(kv).read("table");
    expect(dec.decode(read.value ?? new Uint8Array())).toBe("v");
  });
});
