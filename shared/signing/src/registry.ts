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
  type Frame,
  type Message,
  type Role,
} from "@trias/protocol";
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
  /** Groups of a human key (empty for agents). */
  groups: readonly string[];
  key: KeyObject;
}

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
        groups: k.groups ?? [],
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
   * Check the frame's signature against a registered, active key. Throws a GateError.
   * Returns the key and what the verification is remembered under.
   */
  #verifyFrame(frame: Frame): [RegisteredKey, string] {
    const key = this.#keys.get(frame.kid);
    if (!key) throw new GateError("key_unknown", `key ${frame.kid} is not in the registry`);
    if (key.status !== "active")
      throw new GateError("key_revoked", `key ${frame.kid} (${key.name}) is revoked`);
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
   * Open a signed frame: size and shape, signature by a registered active key, then (only
   * then) decode and validate the envelope, and check that the key may send this kind.
   */
  open(bytes: Uint8Array, maxBytes = MAX_FRAME_BYTES): Opened {
    const frame = decodeFrame(bytes, maxBytes);
    const [key, cacheKey] = this.#verifyFrame(frame);
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
}
