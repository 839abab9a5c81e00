import { z } from "zod";
import { canonicalBytes, canonicalEqual, sha256Hex } from "./codec.js";
import { MAX_FRAME_BYTES } from "./frame.js";
import type { JsonObject } from "./schemas.js";

/**
 * Arguments whose canonical encoding is larger than this travel by reference: the step's
 * frames carry `{ $ref, bytes }` and the bytes are in the payloads bucket (docs/security.md,
 * "Bounded messages end to end"). Below it nothing changes: no bucket write, no read.
 * Small enough that a proposal, its assignment and its verdicts always fit MAX_FRAME_BYTES.
 * @default 65_536 bytes (64 KiB)
 */
export const INLINE_ARGUMENT_BYTES = 64 * 1024;

/**
 * The bytes of a referenced argument are stored in chunks of at most this size (a KV value
 * must fit the server's max_payload, 1 MiB by default): key `<hex>.<i>` holds bytes
 * `[i * PAYLOAD_CHUNK_BYTES, (i + 1) * PAYLOAD_CHUNK_BYTES)` of the canonical encoding.
 * Part of the format (docs/receipts.md, 3): a reader derives the keys from the reference.
 */
export const PAYLOAD_CHUNK_BYTES = 512 * 1024;

/**
 * The largest argument any policy may allow (`limits.maxArgumentBytes`), and what a
 * submitter refuses before it writes anything.
 * @default 67_108_864 bytes (64 MiB)
 */
export const MAX_ARGUMENT_BYTES_CEILING = 64 * 1024 * 1024;

/** The smallest bound a policy may set: arguments that fit a frame are always carried. */
export const MIN_ARGUMENT_BYTES_LIMIT = MAX_FRAME_BYTES;

/**
 * A step's arguments carried by reference: the SHA-256 of their canonical encoding
 * (canonicalBytes) and its length. The digest is the bucket key, so the bytes a reader gets
 * are checked against the reference it holds, and whoever signs a frame that carries the
 * reference (the action digest covers it) binds those exact bytes.
 */
export const ArgsRef = z
  .object({
    $ref: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a reference is "sha256:" and 64 hex digits'),
    bytes: z.number().int().positive(),
  })
  .strict();
export type ArgsRef = z.infer<typeof ArgsRef>;

/**
 * Whether a step's arguments are a reference. The hot path asks this of every step: one
 * property lookup for inline arguments; only an object with a `$ref` is parsed.
 */
export function isArgsRef(args: unknown): args is ArgsRef {
  if (typeof args !== "object" || args === null || !("$ref" in args)) return false;
  return ArgsRef.safeParse(args).success;
}

/** The hex digest a reference names. */
export function refDigest(ref: ArgsRef): string {
  return ref.$ref.slice("sha256:".length);
}

/** The reference of some arguments' canonical encoding. */
export function argsRefOf(canonical: Uint8Array): ArgsRef {
  return { $ref: `sha256:${sha256Hex(canonical)}`, bytes: canonical.length };
}

/** The bucket keys of a referenced argument's chunks, in order. */
export function payloadKeys(ref: ArgsRef): string[] {
  const n = Math.max(1, Math.ceil(ref.bytes / PAYLOAD_CHUNK_BYTES));
  const hex = refDigest(ref);
  return Array.from({ length: n }, (_, i) => `${hex}.${i}`);
}

/** The chunks to store under payloadKeys(argsRefOf(canonical)), in the same order. */
export function payloadChunks(canonical: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < canonical.length; at += PAYLOAD_CHUNK_BYTES)
    out.push(canonical.subarray(at, at + PAYLOAD_CHUNK_BYTES));
  return out;
}

/** How arguments go on the wire: inline, or by reference with the bytes to store. */
export type WireArgs =
  { inline: true; args: JsonObject } | { inline: false; args: ArgsRef; canonical: Uint8Array };

/**
 * Pure: the arguments as a step's frames carry them. Arguments already by reference, and
 * those whose canonical encoding is at most `inlineBytes`, travel as they are; larger ones
 * by reference. Everyone who computes it for the same arguments gets the same reference.
 */
export function wireArgs(args: JsonObject, inlineBytes = INLINE_ARGUMENT_BYTES): WireArgs {
  if (isArgsRef(args)) return { inline: true, args };
  const canonical = canonicalBytes(args);
  if (canonical.length <= inlineBytes) return { inline: true, args };
  return { inline: false, args: argsRefOf(canonical), canonical };
}

/**
 * The argument-equality rule for arguments that may travel by reference: equal when their
 * wire forms (wireArgs) are canonically equal. Arguments and a reference to their bytes are
 * the same action, so a compensation derived from an effect's resolved arguments matches an
 * order that names it by reference.
 */
export function sameArguments(a: JsonObject, b: JsonObject): boolean {
  if (!isArgsRef(a) && !isArgsRef(b)) return canonicalEqual(a, b);
  return canonicalEqual(wireArgs(a).args, wireArgs(b).args);
}
