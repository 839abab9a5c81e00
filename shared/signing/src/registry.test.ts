import { mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import {
  PROTOCOL_VERSION,
  encode,
  encodeFrame,
  decodeFrame,
  type Message,
  type TriasError,
} from "@trias/protocol";
import {
  KeyRegistry,
  Signer,
  initKeyDir,
  keyFileName,
  keyInEffect,
  revokeKey,
  REGISTRY_FILE,
  type RegisteredKey,
} from "./index.js";

let dir: string;
const signer = (n: string) => Signer.load(join(dir, keyFileName(n)));
const registry = () => KeyRegistry.load(join(dir, REGISTRY_FILE));

function task(s: Signer, over: Partial<Message> = {}): Message {
  return {
    v: PROTOCOL_VERSION,
    id: "msg-00000001",
    kind: "task_submitted",
    run: "r1",
    step: null,
    attempt: 0,
    sender: s.kid,
    role: s.role,
    issuedAt: 1,
    expiresAt: 2,
    trace: null,
    body: { goal: "g", program: "p", input: {}, requestedBy: "me" },
    ...over,
  } as Message;
}

function code(f: () => unknown): string {
  try {
    f();
    return "accepted";
  } catch (e) {
    return (e as TriasError).code;
  }
}

describe("signing", () => {
  beforeAll(async () => {
    dir = join(mkdtempSync(join(tmpdir(), "trias-keys-")), "keys");
    await initKeyDir(dir, [
      { name: "console", role: "console" },
      { name: "reviewer-1", role: "reviewer" },
      { name: "old", role: "console" },
    ]);
    revokeKey(dir, "old");
  });

  it("signing - keys init writes private keys 0600 and keeps existing keys on a second run", async () => {
    expect(statSync(join(dir, keyFileName("console"))).mode & 0o777).toBe(0o600);
    const before = readFileSync(join(dir, keyFileName("console")), "utf8");
    const again = await initKeyDir(dir, [
      { name: "console", role: "console" },
      { name: "router", role: "router" },
    ]);
    expect(again.kept).toEqual(["console"]);
    expect(again.created).toEqual(["router"]);
    expect(readFileSync(join(dir, keyFileName("console")), "utf8")).toBe(before);
    const jwks = JSON.parse(readFileSync(join(dir, REGISTRY_FILE), "utf8")) as {
      keys: Record<string, unknown>[];
    };
    expect(jwks.keys.some((k) => "d" in k)).toBe(false);
  });

  it("signing - a sealed frame opens, and any changed payload byte breaks the signature", () => {
    const s = signer("console");
    const bytes = s.seal(task(s));
    const opened = registry().open(bytes);
    expect(opened.message.kind).toBe("task_submitted");
    expect(opened.key.name).toBe("console");
    const frame = decodeFrame(bytes);
    for (const i of [0, Math.floor(frame.payload.length / 2), frame.payload.length - 1]) {
      const payload = Uint8Array.from(frame.payload);
      payload[i] = (payload[i] ?? 0) ^ 0x01;
      expect(code(() => registry().open(encodeFrame({ ...frame, payload })))).toBe(
        "signature_invalid",
      );
    }
  });

  it("signing - unknown, revoked and wrong-role keys are refused before the body is read", () => {
    const s = signer("console");
    const stranger = { ...decodeFrame(s.seal(task(s))), kid: "nobody:123" };
    expect(code(() => registry().open(encodeFrame(stranger)))).toBe("key_unknown");
    const old = signer("old");
    expect(code(() => registry().open(old.seal(task(old))))).toBe("key_revoked");
    const r = signer("reviewer-1");
    // A reviewer key signing a task while claiming the console role.
    expect(code(() => registry().open(r.seal(task(r, { role: "console" }))))).toBe("role_mismatch");
    // The envelope names another sender than the key that signed it.
    expect(code(() => registry().open(r.seal(task(r, { sender: s.kid, role: "reviewer" }))))).toBe(
      "signature_invalid",
    );
  });

  it("signing - a frame sealed in this process opens without a second verification, but only under the same public key", async () => {
    const s = signer("console");
    const bytes = s.seal(task(s, { id: "msg-self-0001" }));
    expect(registry().open(bytes).key.name).toBe("console");
    // A changed byte is not the frame that was sealed: verified, and refused.
    const frame = decodeFrame(bytes);
    const payload = Uint8Array.from(frame.payload);
    payload[3] = (payload[3] ?? 0) ^ 0x01;
    expect(code(() => registry().open(encodeFrame({ ...frame, payload })))).toBe(
      "signature_invalid",
    );
    // A registry that knows another public key under the same key id verifies, and refuses.
    const other = join(mkdtempSync(join(tmpdir(), "trias-keys-")), "keys");
    await initKeyDir(other, [{ name: "console", role: "console" }]);
    const otherJwks = JSON.parse(readFileSync(join(other, REGISTRY_FILE), "utf8")) as {
      keys: { kid: string }[];
    };
    const swapped = new KeyRegistry({
      keys: otherJwks.keys.map((k) => ({ ...k, kid: s.kid })),
    } as never);
    expect(code(() => swapped.open(bytes))).toBe("signature_invalid");
  });

  it("signing - the signature covers the exact bytes: a valid signature over garbage is opened only to a schema error", () => {
    const s = signer("console");
    const payload = encode({ not: "an envelope" });
    expect(
      code(() => registry().open(encodeFrame({ kid: s.kid, sig: s.signBytes(payload), payload }))),
    ).toBe("schema_invalid");
  });

  it("signing - stable message ids are the same for one identity every time, and no one else can compute them", () => {
    const a = signer("console");
    const again = signer("console");
    const other = signer("reviewer-1");
    expect(a.stableId("close-r1")).toBe(again.stableId("close-r1"));
    expect(a.stableId("close-r1")).toMatch(/^close-r1\.[A-Za-z0-9_-]{16}$/);
    expect(other.stableId("close-r1")).not.toBe(a.stableId("close-r1"));
    // The envelope allows 128 characters: long names are cut, and stay apart by their MAC.
    const long = "x".repeat(200);
    expect(a.stableId(`${long}-1`)).toHaveLength(128);
    expect(a.stableId(`${long}-1`)).not.toBe(a.stableId(`${long}-2`));
  });

  it("signing - keyInEffect: a key signs frames stored from addedAt, until revokedAt; null time means now", () => {
    const k = (over: Partial<RegisteredKey>) => ({
      kid: "k:1",
      name: "k",
      status: "active" as const,
      ...over,
    });
    const table: [Parameters<typeof keyInEffect>[0], number | null, string | null][] = [
      [k({}), null, null],
      [k({}), 5, null],
      [k({ addedAt: 10 }), 9, "key_unknown"],
      [k({ addedAt: 10 }), 10, null],
      [k({ addedAt: 10 }), null, null],
      [k({ status: "revoked" }), 5, "key_revoked"],
      [k({ status: "revoked" }), null, "key_revoked"],
      [k({ status: "revoked", revokedAt: 20 }), 19, null],
      [k({ status: "revoked", revokedAt: 20 }), 20, "key_revoked"],
      [k({ status: "revoked", revokedAt: 20 }), null, "key_revoked"],
      [k({ status: "revoked", addedAt: 10, revokedAt: 20 }), 9, "key_unknown"],
      [k({ status: "revoked", addedAt: 10, revokedAt: 20 }), 15, null],
    ];
    for (const [key, at, want] of table)
      expect(keyInEffect(key, at)?.code ?? null, JSON.stringify([key, at])).toBe(want);
  });

  it("signing - a revoked key's frames open when stored before the revocation, and the key-set digest before it does not change", async () => {
    const d = join(mkdtempSync(join(tmpdir(), "trias-keys-")), "keys");
    await initKeyDir(d, [
      { name: "console", role: "console" },
      { name: "router", role: "router" },
    ]);
    const s = Signer.load(join(d, keyFileName("console")));
    const bytes = s.seal(task(s, { id: "msg-before-rev" }));
    const t0 = Date.now();
    const digestBefore = KeyRegistry.load(join(d, REGISTRY_FILE)).keySetDigest(t0);
    revokeKey(d, "console", t0 + 1000);
    const reg = KeyRegistry.load(join(d, REGISTRY_FILE));
    expect(reg.open(bytes, undefined, t0 + 999).key.name).toBe("console");
    expect(code(() => reg.open(bytes, undefined, t0 + 1000))).toBe("key_revoked");
    expect(code(() => reg.open(bytes))).toBe("key_revoked");
    expect(reg.keySetDigest(t0)).toBe(digestBefore);
    expect(reg.keySetDigest(t0 + 1000)).not.toBe(digestBefore);
  });

  it("signing - a JWS signed by an identity opens against the registry, and any changed byte does not", async () => {
    const s = signer("console");
    const jws = await s.signJws({ hello: "world" }, "test+json");
    const opened = registry().openJws(jws);
    expect(opened.header).toMatchObject({ alg: "EdDSA", kid: s.kid, typ: "test+json" });
    expect(JSON.parse(Buffer.from(opened.payload).toString())).toEqual({ hello: "world" });
    const [h, p, sig] = jws.split(".") as [string, string, string];
    const other = Buffer.from(JSON.stringify({ hello: "there" })).toString("base64url");
    expect(code(() => registry().openJws(`${h}.${other}.${sig}`))).toBe("signature_invalid");
    expect(code(() => registry().openJws(`${h}.${p}`))).toBe("frame_malformed");
  });
});
