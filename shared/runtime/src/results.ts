import { decode, sha256Hex, type JsonValue } from "@trias/protocol";

/** The one read resolveResult needs of a KV bucket. */
export interface ResultStore {
  get(key: string): Promise<{ operation: string; value: Uint8Array } | null>;
}

/** The executor's bucket: one record per effect, and the bytes of results too large for a frame. */
export const EFFECTS_BUCKET = "trias_effects";

/**
 * A result too large to travel in its execution record travels by digest: the record says
 * where the bytes are and what they hash to, and the bytes (msgpack) are in the effects
 * bucket under `key`, written before the record is published.
 */
export interface ResultRef {
  "trias.result": { sha256: string; bytes: number; key: string; stored: boolean };
}

export function resultRef(key: string, encoded: Uint8Array, stored: boolean): ResultRef {
  return {
    "trias.result": { sha256: sha256Hex(encoded), bytes: encoded.length, key, stored },
  };
}

export function isResultRef(v: unknown): v is ResultRef {
  if (typeof v !== "object" || v === null || Array.isArray(v)) return false;
  const r = (v as Record<string, unknown>)["trias.result"];
  return typeof r === "object" && r !== null && typeof (r as { key?: unknown }).key === "string";
}

/** Where the bytes of an effect's result go when they do not fit its record. */
export function resultKey(effectKey: string): string {
  return `${effectKey}.result`;
}

/**
 * The result an execution record stands for: itself, or the bytes its reference names,
 * checked against the digest. Throws when they are missing or changed, so a verifier
 * reads "postconditions unreadable", never a wrong result.
 */
export async function resolveResult(
  effects: ResultStore | null,
  result: JsonValue,
): Promise<JsonValue> {
  if (!isResultRef(result)) return result;
  const ref = result["trias.result"];
  if (!ref.stored || !effects)
    throw new Error(`the result (${ref.bytes} bytes) was too large to keep and cannot be read`);
  const e = await effects.get(ref.key);
  if (!e || e.operation !== "PUT" || sha256Hex(e.value) !== ref.sha256)
    throw new Error(`the stored result ${ref.key} is missing or does not match its digest`);
  return decode(e.value) as JsonValue;
}
