/**
 * The projection layer: what a model may see of a task or a step. Secrets (by key name) are
 * dropped, personal data (by shape) is masked, and governance metadata never enters: callers
 * build prompts only from projected values, never from envelopes, tiers, keys or digests.
 */

import { isSealed, sealedSubject } from "@trias/protocol";

const SECRET_KEY =
  /(pass(word)?|secret|token|api[-_]?key|credential|private|^d$|^jwk$|authorization|cookie|session|pin$|cvv|iban|ssn)/i;

const PII: readonly [RegExp, string][] = [
  [/[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}/g, "[email]"],
  [/\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b/g, "[iban]"],
  [/\b(?:\d[ -]?){13,19}\b/g, "[card]"],
  [/\+?\d[\d ()-]{8,}\d/g, "[phone]"],
  [/\bsk-[A-Za-z0-9_-]{8,}\b/g, "[secret]"],
];

export function maskText(s: string): string {
  let out = s;
  for (const [re, mask] of PII) out = out.replace(re, mask);
  return out;
}

/** A deep copy safe to show a model. Pure. */
export function project(value: unknown, depth = 0): unknown {
  if (depth > 8) return "[truncated]";
  // A sealed personal value (docs/privacy.md) is shown as what it is, never as ciphertext.
  if (isSealed(value)) return `[personal data of ${sealedSubject(value) ?? "?"}]`;
  if (typeof value === "string")
    return maskText(value.length > 2000 ? `${value.slice(0, 2000)}…` : value);
  if (Array.isArray(value)) return value.slice(0, 100).map((v) => project(v, depth + 1));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) {
      if (SECRET_KEY.test(k)) continue;
      out[k] = project(v, depth + 1);
    }
    return out;
  }
  return value;
}
