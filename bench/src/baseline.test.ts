import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTestNats, waitFor, type TestNats } from "@trias/testing";
import { Packr } from "msgpackr";
import { Baseline } from "./baseline.js";
import { payloadOf } from "./signed-frame.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

let nats: TestNats;
let signed: Baseline;

beforeAll(async () => {
  nats = await startTestNats();
  signed = await Baseline.start(nats.url, {}, { signed: true });
});

afterAll(async () => {
  await signed?.stop();
  await nats?.stop();
});

describe("bench - signed 4-hop", () => {
  it("carries a message the driver signed through all four hops", async () => {
    const ms = await signed.one(10_000);
    expect(ms).toBeGreaterThan(0);
    const out = await signed.bus.readAll("shop.4");
    expect(out.length).toBe(1);
    // Every hop signed what it sent: 64 bytes of signature, then the payload.
    const body = packr.unpack(payloadOf(out[0]?.data ?? new Uint8Array())) as { hop: number };
    expect(body.hop).toBe(4);
  });

  it("checks signatures: a first message with a forged signature goes no further than hop 0", async () => {
    const payload = packr.pack({ id: "forged", hop: 0, t: Date.now() });
    const forged = new Uint8Array(64 + payload.length);
    forged.fill(7, 0, 64);
    forged.set(payload, 64);
    const ack = await signed.bus.publish("shop.0", forged, {});
    // Hop 0 has settled it (terminated: acked without a redelivery) ...
    await waitFor("hop 0 to settle the forged message", async () => {
      const info = await signed.bus.consumerInfo("shop-0");
      return info && info.ack_floor.stream_seq >= ack.seq && info.num_ack_pending === 0
        ? true
        : undefined;
    });
    // ... and a genuine message sent after it still goes through.
    await signed.one(10_000);
    const ids = (await signed.bus.readAll("shop.>"))
      .filter((m) => m.subject !== "shop.0")
      .map((m) => (packr.unpack(payloadOf(m.data)) as { id: string }).id);
    expect(ids).not.toContain("forged");
    expect(ids.filter((id) => id !== "forged").length).toBe(8);
  });
});
