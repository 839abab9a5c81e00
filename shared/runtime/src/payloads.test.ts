import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, LocalNatsServer, PAYLOADS_BUCKET } from "@trias/bus";
import {
  PAYLOAD_CHUNK_BYTES,
  TriasError,
  argsRefOf,
  canonicalBytes,
  isArgsRef,
  payloadKeys,
} from "@trias/protocol";
import { busPayloads } from "./payloads.js";

/** The error code a promise rejects with, or "resolved". */
async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => "resolved",
    (e: unknown) => (e instanceof TriasError ? e.code : String(e)),
  );
}

describe("Payloads on a real nats-server", () => {
  let server: LocalNatsServer;
  let bus: Bus;

  beforeAll(async () => {
    server = await LocalNatsServer.start();
    bus = await Bus.connect({ servers: server.url, name: "payloads-test" });
  });

  afterAll(async () => {
    await bus?.drain();
    await server?.stop();
  });

  it("payloads - without the bucket, a reference is refused with what to do, and small arguments need none", async () => {
    const p = busPayloads(bus);
    expect(await p.store({ n: 1 })).toEqual({ n: 1 });
    expect(await p.resolve({ n: 1 })).toEqual({ n: 1 });
    const ref = argsRefOf(canonicalBytes({ blob: "x".repeat(100_000) }));
    await expect(p.resolve(ref)).rejects.toThrow(/no payloads bucket .* `trias setup`/);
    expect(await codeOf(p.store({ blob: "x".repeat(100_000) }))).toBe("payload_unavailable");
  });

  it("payloads - arguments over several chunks are stored under their digest and read back whole; a missing chunk is refused", async () => {
    await bus.kv(PAYLOADS_BUCKET, { create: true });
    // Found once created, by the same handle: a missing bucket is asked again.
    const p = busPayloads(bus);
    const args = { blob: "z".repeat(PAYLOAD_CHUNK_BYTES * 2 + 1000), n: 7 };
    const ref = await p.store(args);
    expect(isArgsRef(ref)).toBe(true);
    expect(ref).toEqual(argsRefOf(canonicalBytes(args)));
    expect(await p.resolve(ref)).toEqual(args);
    const kv = await bus.kv(PAYLOADS_BUCKET);
    const keys = payloadKeys(argsRefOf(canonicalBytes(args)));
    expect(keys).toHaveLength(3);
    await kv.delete(keys[1]!);
    await expect(p.resolve(ref)).rejects.toThrow(/chunk .*\.1 is missing/);
    // Storing the same arguments again repairs it: the key is the content.
    await p.store(args);
    expect(await p.resolve(ref)).toEqual(args);
  });

  it("payloads - bytes that match their digest but are not an arguments object are refused", async () => {
    const p = busPayloads(bus);
    const bytes = canonicalBytes(["not", "an", "object", "x".repeat(100_000)]);
    const ref = argsRefOf(bytes);
    const kv = await bus.kv(PAYLOADS_BUCKET);
    await kv.put(payloadKeys(ref)[0]!, bytes);
    expect(await codeOf(p.resolve(ref))).toBe("payload_unavailable");
  });
});
