import { createRequire } from "node:module";
import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from "node:crypto";

/**
 * Ed25519 on the hot path. Every hop verifies and signs, and node:crypto pays for an
 * OpenSSL context per call, so libsodium (sodium-native, prebuilt for Linux, macOS and
 * Windows) does the work: docs/decisions/001-libsodium.md. Both are RFC 8032 Ed25519, so either verifies what the other signed; when
 * sodium-native cannot load (a platform without a prebuild) node:crypto does the work, and
 * TRIAS_ED25519=node forces that choice.
 */
export interface Ed25519 {
  readonly name: "libsodium" | "node:crypto";
  /** A signing key from the 32-byte seed and 32-byte public key (JWK d and x). */
  signingKey(seed: Uint8Array, publicKey: Uint8Array): SigningKey;
  /** A verifying key from the 32-byte public key (JWK x). */
  verifyingKey(publicKey: Uint8Array): VerifyingKey;
}

export interface SigningKey {
  sign(payload: Uint8Array): Uint8Array;
}

export interface VerifyingKey {
  /** False for a wrong signature, whatever its length. */
  verify(payload: Uint8Array, sig: Uint8Array): boolean;
}

interface Sodium {
  crypto_sign_BYTES: number;
  crypto_sign_SECRETKEYBYTES: number;
  crypto_sign_detached(sig: Buffer, message: Uint8Array, secretKey: Buffer): void;
  crypto_sign_verify_detached(sig: Uint8Array, message: Uint8Array, publicKey: Buffer): boolean;
}

const nodeCrypto: Ed25519 = {
  name: "node:crypto",
  signingKey(seed, publicKey) {
    const key = privateKeyObject(seed, publicKey);
    return { sign: (payload) => sign(null, payload, key) };
  },
  verifyingKey(publicKey) {
    const key = publicKeyObject(publicKey);
    return { verify: (payload, sig) => sig.length === 64 && verify(null, payload, key, sig) };
  },
};

function libsodium(s: Sodium): Ed25519 {
  return {
    name: "libsodium",
    signingKey(seed, publicKey) {
      // libsodium's secret key is the seed followed by the public key.
      const secret = Buffer.alloc(s.crypto_sign_SECRETKEYBYTES);
      secret.set(seed, 0);
      secret.set(publicKey, 32);
      return {
        sign(payload) {
          const sig = Buffer.alloc(s.crypto_sign_BYTES);
          s.crypto_sign_detached(sig, payload, secret);
          return sig;
        },
      };
    },
    verifyingKey(publicKey) {
      const pk = Buffer.from(publicKey);
      return {
        verify: (payload, sig) =>
          sig.length === s.crypto_sign_BYTES && s.crypto_sign_verify_detached(sig, payload, pk),
      };
    },
  };
}

function loadSodium(): Sodium | undefined {
  try {
    return createRequire(import.meta.url)("sodium-native") as Sodium;
  } catch {
    return undefined;
  }
}

const sodium = loadSodium();
const fast = sodium === undefined ? undefined : libsodium(sodium);

/** Every implementation that loads here (tests run the same cases over each). */
export const ed25519Backends: readonly Ed25519[] = fast ? [fast, nodeCrypto] : [nodeCrypto];

/** The implementation agents use. */
export const ed25519: Ed25519 =
  process.env["TRIAS_ED25519"] === "node" || !fast ? nodeCrypto : fast;

export function publicKeyObject(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: { kty: "OKP", crv: "Ed25519", x: Buffer.from(publicKey).toString("base64url") },
    format: "jwk",
  });
}

export function privateKeyObject(seed: Uint8Array, publicKey: Uint8Array): KeyObject {
  return createPrivateKey({
    key: {
      kty: "OKP",
      crv: "Ed25519",
      x: Buffer.from(publicKey).toString("base64url"),
      d: Buffer.from(seed).toString("base64url"),
    },
    format: "jwk",
  });
}
