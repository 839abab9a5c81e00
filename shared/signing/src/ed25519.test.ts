import { generateKeyPairSync, sign as nodeSign, verify as nodeVerify } from "node:crypto";
import { describe, expect, it } from "vitest";
import { compactVerify, importJWK } from "jose";
import { generateIdentity } from "./keys.js";
import { ed25519, ed25519Backends, privateKeyObject, publicKeyObject } from "./ed25519.js";

function keyPair(): { seed: Buffer; pub: Buffer } {
  const { privateKey } = generateKeyPairSync("ed25519");
  const jwk = privateKey.export({ format: "jwk" });
  return {
    seed: Buffer.from(jwk.d ?? "", "base64url"),
    pub: Buffer.from(jwk.x ?? "", "base64url"),
  };
}

describe("ed25519", () => {
  it("ed25519 - libsodium loads here and is what agents use", () => {
    // sodium-native ships prebuilds for this platform; falling back silently would lose
    // half the hot path's speed without anyone noticing.
    expect(ed25519Backends.map((b) => b.name)).toEqual(["libsodium", "node:crypto"]);
    expect(ed25519.name).toBe(
      process.env["TRIAS_ED25519"] === "node" ? "node:crypto" : "libsodium",
    );
  });

  for (const b of ed25519Backends) {
    it(`ed25519 - ${b.name} signatures match node:crypto's byte for byte and verify both ways`, () => {
      const { seed, pub } = keyPair();
      const privateKey = privateKeyObject(seed, pub);
      const publicKey = publicKeyObject(pub);
      const payload = Buffer.from("a step, exactly these bytes");
      const sig = b.signingKey(seed, pub).sign(payload);
      // Ed25519 is deterministic: the same key and message give the same signature anywhere.
      expect(Buffer.from(sig).equals(nodeSign(null, payload, privateKey))).toBe(true);
      expect(nodeVerify(null, payload, publicKey, sig)).toBe(true);
      expect(b.verifyingKey(pub).verify(payload, nodeSign(null, payload, privateKey))).toBe(true);
    });

    it(`ed25519 - ${b.name} refuses a changed payload, another key, a changed or cut signature`, () => {
      const k = keyPair();
      const other = keyPair();
      const payload = Buffer.from("approve step 3");
      const sig = Buffer.from(b.signingKey(k.seed, k.pub).sign(payload));
      const v = b.verifyingKey(k.pub);
      expect(v.verify(payload, sig)).toBe(true);
      expect(v.verify(Buffer.from("approve step 4"), sig)).toBe(false);
      expect(b.verifyingKey(other.pub).verify(payload, sig)).toBe(false);
      const flipped = Buffer.from(sig);
      flipped[10] = (flipped[10] ?? 0) ^ 1;
      expect(v.verify(payload, flipped)).toBe(false);
      expect(v.verify(payload, sig.subarray(0, 63))).toBe(false);
      expect(v.verify(payload, Buffer.concat([sig, Buffer.from([0])]))).toBe(false);
    });

    it(`ed25519 - ${b.name} signs what jose verifies as a JWS (EdDSA) with a generated identity`, async () => {
      const { priv, pub } = await generateIdentity({ name: "router", role: "router" });
      const signing = b.signingKey(
        Buffer.from(priv.jwk.d, "base64url"),
        Buffer.from(priv.jwk.x, "base64url"),
      );
      const header = Buffer.from(JSON.stringify({ alg: "EdDSA" })).toString("base64url");
      const body = Buffer.from("{}").toString("base64url");
      const sig = Buffer.from(signing.sign(Buffer.from(`${header}.${body}`))).toString("base64url");
      const key = await importJWK({ kty: "OKP", crv: "Ed25519", x: pub.x }, "EdDSA");
      const out = await compactVerify(`${header}.${body}.${sig}`, key);
      expect(Buffer.from(out.payload).toString()).toBe("{}");
    });
  }
});
