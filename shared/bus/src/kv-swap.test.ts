import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { KV } from "@nats-io/kv";
import { TriasError } from "@trias/protocol";
import { Bus, LocalNatsServer, isRevisionConflict, swapSoleKey } from "./index.js";

const enc = new TextEncoder();
const dec = new TextDecoder();

describe("swapSoleKey", () => {
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

  async function conflict(p: Promise<unknown>): Promise<boolean> {
    try {
      await p;
      return false;
    } catch (e) {
      return isRevisionConflict(e);
    }
  }

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
