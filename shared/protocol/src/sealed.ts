import type { JsonValue } from "./schemas.js";

/**
 * Sealed personal values (docs/privacy.md): `pii:v1:<subject>:<base64url(iv|ciphertext|tag)>`.
 * Sealing needs a key and lives with the key store (@trias/tools); recognising and masking a
 * token is pure and shared here, by the console's rendering and the models' projection.
 */

/** A data subject's id: also a KV key and part of each token, so never itself personal data. */
export const SUBJECT_ID = /^[A-Za-z0-9_-]{1,64}$/;
export const SEALED_TOKEN = /^pii:v1:([A-Za-z0-9_-]{1,64}):([A-Za-z0-9_-]+)$/;

export function isSealed(v: unknown): v is string {
  return typeof v === "string" && SEALED_TOKEN.test(v);
}

/** The subject a token belongs to, or null when it is not a token. */
export function sealedSubject(v: unknown): string | null {
  if (typeof v !== "string") return null;
  return SEALED_TOKEN.exec(v)?.[1] ?? null;
}

/**
 * Any JSON with each token replaced by what a reader may see: `[personal data of <subject>]`,
 * or `[erased]` once the subject's key is gone. What replay, exports shown and models see.
 */
export function maskSealed(v: JsonValue, erased: ReadonlySet<string> = new Set()): JsonValue {
  if (typeof v === "string") {
    const s = sealedSubject(v);
    if (s === null) return v;
    return erased.has(s) ? "[erased]" : `[personal data of ${s}]`;
  }
  if (Array.isArray(v)) return v.map((x) => maskSealed(x, erased));
  if (v && typeof v === "object")
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, maskSealed(x, erased)]));
  return v;
}

/** Every subject whose tokens occur in `v`. */
export function subjectsIn(v: unknown, into = new Set<string>()): Set<string> {
  const s = sealedSubject(v);
  if (s) into.add(s);
  else if (Array.isArray(v)) for (const x of v) subjectsIn(x, into);
  else if (v && typeof v === "object") for (const x of Object.values(v)) subjectsIn(x, into);
  return into;
}
