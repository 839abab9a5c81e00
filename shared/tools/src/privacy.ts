import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import type { KV } from "@nats-io/kv";
import { createExact } from "@trias/bus";
import { sealedSubject, SEALED_TOKEN, SUBJECT_ID, ValidationError } from "@trias/protocol";
import { ToolRefusal } from "./pack.js";

/**
 * Crypto-shredding (docs/privacy.md): a personal field travels and is stored only as a
 * sealed token, AES-256-GCM under its data subject's own key. Destroying the key erases
 * every copy at once (trace, exports, logs) while signatures and receipts, which cover the
 * token, keep verifying.
 */

/** AES-256-GCM: a 32-byte key, the 12-byte nonce GCM is specified for, its 16-byte tag. */
const KEY_BYTES = 32;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** What the key store holds for a subject whose key was destroyed: erasure is then known, not guessed. */
const ERASED = "erased";

export function checkSubject(subject: string): string {
  if (!SUBJECT_ID.test(subject))
    throw new ValidationError(
      "schema_invalid",
      `subject id "${subject}" is invalid: use 1 to 64 of A-Z, a-z, 0-9, '_' or '-' (a customer number, never a name or an e-mail)`,
    );
  return subject;
}

/** Seal one clear value for `subject`; the subject is authenticated data, so a token cannot be moved to another subject. */
export function seal(key: Uint8Array, subject: string, clear: string): string {
  const iv = randomBytes(IV_BYTES);
  const c = createCipheriv("aes-256-gcm", key, iv);
  c.setAAD(Buffer.from(checkSubject(subject)));
  const body = Buffer.concat([iv, c.update(clear, "utf8"), c.final(), c.getAuthTag()]);
  return `pii:v1:${subject}:${body.toString("base64url")}`;
}

/** Open a token with its subject's key; a wrong key or a changed token throws. */
export function unseal(key: Uint8Array, token: string): string {
  const m = SEALED_TOKEN.exec(token);
  if (!m) throw new ValidationError("schema_invalid", "not a sealed personal value (pii:v1:...)");
  const body = Buffer.from(m[2]!, "base64url");
  if (body.length < IV_BYTES + TAG_BYTES)
    throw new ValidationError("schema_invalid", "a sealed personal value is truncated");
  const d = createDecipheriv("aes-256-gcm", key, body.subarray(0, IV_BYTES));
  d.setAAD(Buffer.from(m[1]!));
  d.setAuthTag(body.subarray(body.length - TAG_BYTES));
  return Buffer.concat([
    d.update(body.subarray(IV_BYTES, body.length - TAG_BYTES)),
    d.final(),
  ]).toString("utf8");
}

export type KeyState = { state: "present"; key: Uint8Array } | { state: "erased" | "unknown" };

/** The key store bucket seen through one identity's credentials (docs/privacy.md says whose). */
export class SubjectKeys {
  constructor(readonly kv: KV) {}

  async get(subject: string): Promise<KeyState> {
    const e = await this.kv.get(checkSubject(subject));
    if (!e || e.operation !== "PUT") return { state: "unknown" };
    if (e.value.length === KEY_BYTES) return { state: "present", key: e.value };
    return { state: "erased" };
  }

  /** The subject's key, created on first use; an erased subject gets no new key (erasure is final). */
  async keyFor(subject: string): Promise<Uint8Array> {
    const k = await this.get(subject);
    if (k.state === "present") return k.key;
    if (k.state === "erased")
      throw new ValidationError(
        "schema_invalid",
        `subject ${subject} was erased: its personal data cannot be accepted again under that id (use a new subject id)`,
      );
    const key = randomBytes(KEY_BYTES);
    try {
      // Exactly one console's key is stored when two seal a new subject at once, on an R3
      // bucket too (createExact, docs/scaling.md section 1); the other reads it below.
      await createExact(this.kv, subject, key);
      return key;
    } catch {
      // Another console created it first: use that one.
      const again = await this.get(subject);
      if (again.state === "present") return again.key;
      throw new ValidationError("schema_invalid", `subject ${subject} has no usable key`);
    }
  }

  /** Clear value of a token, through this store. */
  async open(token: string): Promise<string> {
    const subject = sealedSubject(token);
    if (!subject) throw new ValidationError("schema_invalid", "not a sealed personal value");
    const k = await this.get(subject);
    // A refusal of the tool that needed the datum, not an error of the executor: the step
    // is recorded as failed and the run recovers (rolls back) instead of waiting forever for
    // an execution that will never come (a subject erased while its run is open).
    if (k.state !== "present")
      throw new ToolRefusal(
        `the personal data of subject ${subject} is ${k.state === "erased" ? "erased" : "not in the key store"}`,
      );
    return unseal(k.key, token);
  }

  /**
   * Destroy the subject's key: the stored message is overwritten on the server (a secure
   * delete), then a marker records the erasure. Returns false when there was no key.
   */
  async erase(subject: string, secureDelete: (seq: number) => Promise<void>): Promise<boolean> {
    const e = await this.kv.get(checkSubject(subject));
    const had = !!e && e.operation === "PUT" && e.value.length === KEY_BYTES;
    if (e && e.operation === "PUT") await secureDelete(e.revision);
    await this.kv.put(subject, ERASED);
    return had;
  }
}

/** Seal every string of `personal` for `subject` (the console, at submission). */
export async function sealFields(
  keys: SubjectKeys,
  subject: string,
  personal: Record<string, string>,
): Promise<Record<string, string>> {
  const key = await keys.keyFor(subject);
  return Object.fromEntries(Object.entries(personal).map(([k, v]) => [k, seal(key, subject, v)]));
}
