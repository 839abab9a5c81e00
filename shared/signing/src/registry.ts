import {
  createHmac,
  createPrivateKey,
  createPublicKey,
  createSecretKey,
  hash,
  type KeyObject,
} from "node:crypto";
import {
  GateError,
  SENDERS,
  boundedAdd,
  boundedSet,
  decode,
  decodeFrame,
  encode,
  encodeFrame,
  parseMessage,
  MAX_FRAME_BYTES,
  ValidationError,
  type Frame,
  type Message,
  type Role,
} from "@trias/protocol";
import { CompactSign } from "jose";
import { readJwks, readPrivateKeyFile, type Jwks, type PrivateKeyFile } from "./keys.js";
import { ed25519, publicKeyObject, type SigningKey, type VerifyingKey } from "./ed25519.js";

/** The key a verification result is remembered under: signer, signature and payload digest. */
function verifiedKey(kid: string, sig: Uint8Array, payload: Uint8Array): string {
  const sigB64 = Buffer.from(sig.buffer, sig.byteOffset, sig.byteLength).toString("base64");
  return `${kid}|${sigB64}|${hash("sha256", payload, "base64")}`;
}

/**
 * Frames sealed in this process (verified key -> the signer's public key), so that a process
 * reading its own messages back does not verify its own signatures: the verifier follows the
 * whole trace, its own step_verified and run_closed included. An entry counts only for a
 * registry whose key of that id is the same public key. Bounded, oldest out first.
 */
const sealedHere = new Map<string, string>();
const SEALED_LIMIT = 4096;
/** Envelopes kept decoded: enough for a step's frames to come back as evidence at 32 runs in flight. */
const OPENED_LIMIT = 512;

export interface RegisteredKey {
  kid: string;
  name: string;
  role: Role;
  status: "active" | "revoked";
  /** When the key took effect (ms since the epoch); undefined: since always. */
  addedAt?: number;
  /** When it was revoked (ms since the epoch); undefined on a revoked key: since always. */
  revokedAt?: number;
  /** The public key, base64url (JWK x): what the key-set digest commits to. */
  x: string;
  key: KeyObject;
}

/** Why a key is not in effect at a given time, or null when it is. */
export type KeyTimeRefusal = { code: "key_revoked" | "key_unknown"; reason: string } | null;

/**
 * Whether `key` may sign a frame stored at `at` (ms since the epoch). `at` null means "now,
 * whatever the clock says": what a live agent asks, where any revoked key is refused at once.
 * With a time, a revocation takes effect at `revokedAt` (frames stored before it stay valid)
 * and a key only from `addedAt`. A revoked key without `revokedAt` is revoked since always.
 */
export function keyInEffect(
  key: Pick<RegisteredKey, "kid" | "name" | "status" | "addedAt" | "revokedAt">,
  at: number | null,
): KeyTimeRefusal {
  if (at !== null && key.addedAt !== undefined && at < key.addedAt) {
    return {
      code: "key_unknown",
      reason: `key ${key.kid} (${key.name}) took effect at ${iso(key.addedAt)}, after this frame was stored (${iso(at)})`,
    };
  }
  if (key.status === "active") return null;
  if (at === null || key.revokedAt === undefined || at >= key.revokedAt) {
    return {
      code: "key_revoked",
      reason: `key ${key.kid} (${key.name}) is revoked${key.revokedAt === undefined ? "" : ` since ${iso(key.revokedAt)}`}${at === null ? "" : ` and the frame was stored at ${iso(at)}`}`,
    };
  }
  return null;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Key-set digest domain, so the digest can never be mistaken for another sha256 in Trias. */
const KEY_SET_HEADER = "trias-keyset-v1\n";

/**
 * The public keys every agent trusts, loaded from a JWKS file. Signatures are checked with
 * libsodium or node:crypto (the same Ed25519 as JWS EdDSA, see ed25519.ts) because this is
 * the hot path of every hop; jose stays the tool for generating keys and for JWS interchange.
 */
export class KeyRegistry {
  readonly #keys = new Map<string, RegisteredKey>();
  readonly #verifiers = new Map<string, VerifyingKey>();
  /** Public key (JWK x) per key id, to match frames sealed in this process. */
  readonly #publicX = new Map<string, string>();
  // A frame embedded as evidence is checked again at every hop: remember what passed.
  readonly #verified = new Set<string>();
  /** Validated envelopes by verified key, shared by every caller: messages are never mutated. */
  readonly #opened = new Map<string, Message>();
  readonly #cacheLimit: number;

  constructor(jwks: Jwks, cacheLimit = 8192) {
    this.#load(jwks);
    this.#cacheLimit = cacheLimit;
  }

  static load(path: string): KeyRegistry {
    return new KeyRegistry(readJwks(path));
  }

  /**
   * Take a new registry (a key revoked or added) without a restart. Verified-frame memory is
   * dropped, so a revoked key's frames are refused from now on, embedded evidence included.
   */
  replaceKeys(jwks: Jwks): void {
    this.#keys.clear();
    this.#verifiers.clear();
    this.#publicX.clear();
    this.#load(jwks);
    this.#verified.clear();
    this.#opened.clear();
  }

  #load(jwks: Jwks): void {
    for (const k of jwks.keys) {
      const x = Buffer.from(k.x, "base64url");
      this.#keys.set(k.kid, {
        kid: k.kid,
        name: k.name,
        role: k.role,
        status: k.status,
        ...(k.addedAt !== undefined ? { addedAt: k.addedAt } : {}),
        ...(k.revokedAt !== undefined ? { revokedAt: k.revokedAt } : {}),
        x: k.x,
        key: publicKeyObject(x),
      });
      this.#verifiers.set(k.kid, ed25519.verifyingKey(x));
      this.#publicX.set(k.kid, k.x);
    }
  }

  get(kid: string): RegisteredKey | undefined {
    return this.#keys.get(kid);
  }

  all(): RegisteredKey[] {
    return [...this.#keys.values()];
  }

  /**
   * The digest of the keys in effect at `at` (ms since the epoch): sha256 of the UTF-8 text
   * "trias-keyset-v1\n" then one line "kid TAB role TAB x LF" per key, sorted by the UTF-8
   * bytes of kid (docs/receipts.md, "Key-set digest"). Text, not msgpack, so any language
   * recomputes it. A later revocation or a later key leaves it unchanged, so a receipt that
   * names it stays checkable against the registry of any later day.
   */
  keySetDigest(at: number): string {
    const lines = this.all()
      .filter((k) => keyInEffect(k, at) === null)
      .map((k) => ({ kid: Buffer.from(k.kid, "utf8"), line: `${k.kid}\t${k.role}\t${k.x}\n` }))
      .sort((a, b) => Buffer.compare(a.kid, b.kid))
      .map((k) => k.line);
    return hash("sha256", KEY_SET_HEADER + lines.join(""), "hex");
  }

  /**
   * Check a detached Ed25519 signature over `payload` by `kid`, in effect at `at` (see
   * keyInEffect). For signed records that are not envelopes (receipt checkpoints). Throws a
   * GateError.
   */
  verifyDetached(
    kid: string,
    payload: Uint8Array,
    sig: Uint8Array,
    at: number | null = null,
  ): RegisteredKey {
    const [key] = this.#verifyFrame({ kid, sig, payload }, at);
    return key;
  }

  /**
   * Open a compact JWS (EdDSA) signed by a registered key in effect at `at`: the signature
   * over `header.payload` as RFC 7515 defines it, checked like a frame's. Returns the
   * protected header, the payload bytes and the key. Throws a GateError or ValidationError.
   */
  openJws(
    jws: string,
    at: number | null = null,
  ): { header: Record<string, unknown>; payload: Uint8Array; key: RegisteredKey } {
    const parts = jws.split(".");
    if (parts.length !== 3)
      throw new ValidationError("frame_malformed", "not a compact JWS (header.payload.signature)");
    const [h, p, sig] = parts as [string, string, string];
    let header: Record<string, unknown>;
    try {
      header = JSON.parse(Buffer.from(h, "base64url").toString("utf8")) as Record<string, unknown>;
    } catch (e) {
      throw new ValidationError("frame_malformed", "the JWS header is not JSON", { cause: e });
    }
    if (header === null || typeof header !== "object" || header["alg"] !== "EdDSA")
      throw new ValidationError("frame_malformed", "the JWS is not signed with alg EdDSA");
    const kid = header["kid"];
    if (typeof kid !== "string" || kid.length === 0)
      throw new ValidationError("signature_missing", "the JWS header names no kid");
    const key = this.verifyDetached(
      kid,
      Buffer.from(`${h}.${p}`, "ascii"),
      Buffer.from(sig, "base64url"),
      at,
    );
    return { header, payload: Buffer.from(p, "base64url"), key };
  }

  /**
   * Check the frame's signature against a registered key in effect at `at` (null: an
   * active key). Throws a GateError. Returns the key and what the verification is
   * remembered under.
   */
  #verifyFrame(frame: Frame, at: number | null): [RegisteredKey, string] {
    const key = this.#keys.get(frame.kid);
    if (!key) throw new GateError("key_unknown", `key ${frame.kid} is not in the registry`);
    const refused = keyInEffect(key, at);
    if (refused) throw new GateError(refused.code, refused.reason);
    const cacheKey = verifiedKey(frame.kid, frame.sig, frame.payload);
    if (this.#verified.has(cacheKey)) return [key, cacheKey];
    const sealedBy = sealedHere.get(cacheKey);
    const ownFrame = sealedBy !== undefined && sealedBy === this.#publicX.get(frame.kid);
    if (!ownFrame && !this.#verifiers.get(frame.kid)?.verify(frame.payload, frame.sig)) {
      throw new GateError(
        "signature_invalid",
        `signature by ${frame.kid} (${key.name}) does not match the payload`,
      );
    }
    boundedAdd(this.#verified, cacheKey, this.#cacheLimit);
    return [key, cacheKey];
  }

  /**
   * Open a signed frame: size and shape, signature by a registered key in effect (active;
   * or, given the time `storedAt` the frame was stored, in effect then), then (only then)
   * decode and validate the envelope, and check that the key may send this kind.
   */
  open(bytes: Uint8Array, maxBytes = MAX_FRAME_BYTES, storedAt: number | null = null): Opened {
    const frame = decodeFrame(bytes, maxBytes);
    const [key, cacheKey] = this.#verifyFrame(frame, storedAt);
    // A frame comes back as evidence inside later ones (a proposal inside its assignment,
    // inside the execution): decoded and validated once. The copy keeps a remembered message
    // from holding on to the socket buffer its frame arrived in.
    let message = this.#opened.get(cacheKey);
    if (message === undefined) {
      message = parseMessage(decode(Buffer.from(frame.payload)));
      boundedSet(this.#opened, cacheKey, message, OPENED_LIMIT);
    }
    if (message.sender !== frame.kid) {
      throw new GateError(
        "signature_invalid",
        `envelope names sender ${message.sender} but is signed by ${frame.kid}`,
      );
    }
    if (message.role !== key.role) {
      throw new GateError(
        "role_mismatch",
        `envelope claims role ${message.role} but key ${key.name} is a ${key.role}`,
      );
    }
    if (!SENDERS[message.kind].includes(key.role)) {
      throw new GateError(
        "role_mismatch",
        `a ${key.role} may not send ${message.kind} (only ${SENDERS[message.kind].join(", ")})`,
      );
    }
    return { message, frame, key, bytes };
  }
}

export interface Opened {
  message: Message;
  frame: Frame;
  key: RegisteredKey;
  bytes: Uint8Array;
}

/** Holds one identity's private key and signs frames for it. */
export class Signer {
  readonly kid: string;
  readonly name: string;
  readonly role: Role;
  readonly #key: KeyObject;
  readonly #signing: SigningKey;
  readonly #publicX: string;
  readonly #idKey: KeyObject;

  constructor(file: PrivateKeyFile) {
    this.kid = file.kid;
    this.name = file.name;
    this.role = file.role;
    this.#key = createPrivateKey({ key: { ...file.jwk }, format: "jwk" });
    // The public half is derived, not read from the file: a file whose x does not match
    // its d would otherwise sign with a mismatched key.
    this.#publicX = String(createPublicKey(this.#key).export({ format: "jwk" }).x);
    const seed = Buffer.from(file.jwk.d, "base64url");
    this.#signing = ed25519.signingKey(seed, Buffer.from(this.#publicX, "base64url"));
    // A KeyObject, made once: HMAC with a raw key converts it on every call (7x slower).
    this.#idKey = createSecretKey(
      hash("sha256", Buffer.concat([Buffer.from("trias-message-id|"), seed]), "buffer"),
    );
  }

  /**
   * The message id for a message that must be published at most once (retries reuse it):
   * the readable name, then a MAC only this identity can compute. JetStream drops a second
   * message with an id it has seen, whoever sent the first, so a readable id alone
   * ("close-<run>") would let any process allowed to publish take it first and have the
   * genuine message silently dropped. At most 128 characters; distinct names stay distinct.
   */
  stableId(name: string): string {
    const mac = createHmac("sha256", this.#idKey).update(name, "utf8").digest("base64url");
    return `${name.slice(0, 111)}.${mac.slice(0, 16)}`;
  }

  static load(path: string): Signer {
    return new Signer(readPrivateKeyFile(path));
  }

  signBytes(payload: Uint8Array): Uint8Array {
    return this.#signing.sign(payload);
  }

  /** Encode the envelope once and sign exactly those bytes. */
  seal(message: Message): Uint8Array {
    const payload = encode(message);
    const sig = this.signBytes(payload);
    boundedSet(sealedHere, verifiedKey(this.kid, sig, payload), this.#publicX, SEALED_LIMIT);
    return encodeFrame({ kid: this.kid, sig, payload });
  }

  /** The private key as a jose-compatible KeyObject (for JWS receipts). */
  keyObject(): KeyObject {
    return this.#key;
  }

  /**
   * A compact JWS (RFC 7515, alg EdDSA, this key's kid) over the JSON of `payload`: the
   * standard envelope generic tooling checks against the registry's JWKS entry.
   */
  async signJws(payload: unknown, typ: string): Promise<string> {
    return new CompactSign(new TextEncoder().encode(JSON.stringify(payload)))
      .setProtectedHeader({ alg: "EdDSA", kid: this.kid, typ })
      .sign(this.#key);
  }
}
