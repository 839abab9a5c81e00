import { describe, expect, it } from "vitest";
import { canonicalBytes, sha256Hex } from "./codec.js";
import {
  INLINE_ARGUMENT_BYTES,
  PAYLOAD_CHUNK_BYTES,
  argsRefOf,
  isArgsRef,
  payloadChunks,
  payloadKeys,
  refDigest,
  sameArguments,
  wireArgs,
} from "./payloads.js";

const big = { blob: "x".repeat(INLINE_ARGUMENT_BYTES), n: 1 };
const ref = argsRefOf(canonicalBytes(big));

describe("arguments by reference (pure)", () => {
  // [name, value, is a reference]
  const REFS: [string, unknown, boolean][] = [
    ["a reference", ref, true],
    ["inline arguments", { n: 1 }, false],
    ["a $ref that is not a sha256 digest", { $ref: "sha1:abc", bytes: 3 }, false],
    ["a reference with another key", { ...ref, extra: 1 }, false],
    ["a reference of no bytes", { ...ref, bytes: 0 }, false],
    ["null", null, false],
    ["an array", [ref], false],
  ];
  it.each(REFS)("payloads - %s is a reference: %s", (_name, v, want) => {
    expect(isArgsRef(v)).toBe(want);
  });

  it("payloads - arguments up to the inline bound travel as they are, larger ones by the digest of their canonical bytes", () => {
    const small = { blob: "x".repeat(INLINE_ARGUMENT_BYTES - 64) };
    expect(wireArgs(small)).toEqual({ inline: true, args: small });
    const w = wireArgs(big);
    expect(w.inline).toBe(false);
    expect(w.args).toEqual({
      $ref: `sha256:${sha256Hex(canonicalBytes(big))}`,
      bytes: w.args.bytes,
    });
    expect(w.args.bytes).toBeGreaterThan(INLINE_ARGUMENT_BYTES);
    // Key order does not change the reference; a reference is carried as it is.
    expect(wireArgs({ n: 1, blob: big.blob }).args).toEqual(w.args);
    expect(wireArgs(ref)).toEqual({ inline: true, args: ref });
  });

  it("payloads - the chunks under a reference's keys put together are its bytes", () => {
    const value = { blob: "y".repeat(PAYLOAD_CHUNK_BYTES * 2 + 10) };
    const bytes = canonicalBytes(value);
    const r = argsRefOf(bytes);
    const keys = payloadKeys(r);
    const chunks = payloadChunks(bytes);
    expect(keys).toEqual([0, 1, 2].map((i) => `${refDigest(r)}.${i}`));
    expect(chunks.map((c) => c.length)).toEqual([
      PAYLOAD_CHUNK_BYTES,
      PAYLOAD_CHUNK_BYTES,
      r.bytes - 2 * PAYLOAD_CHUNK_BYTES,
    ]);
    expect(Buffer.concat(chunks).equals(Buffer.from(bytes))).toBe(true);
    expect(payloadKeys(argsRefOf(canonicalBytes({ a: 1 })))).toHaveLength(1);
  });

  // [name, a, b, same]
  const SAME: [string, Record<string, unknown>, Record<string, unknown>, boolean][] = [
    ["equal inline arguments, any key order", { a: 1, b: 2 }, { b: 2, a: 1 }, true],
    ["different inline arguments", { a: 1 }, { a: "1" }, false],
    ["large arguments and their reference", big, ref, true],
    ["a reference and the arguments it names", ref, big, true],
    ["large arguments and another's reference", { ...big, n: 2 }, ref, false],
    ["two equal references", ref, { ...ref }, true],
    [
      "small arguments and a reference to them (never made: they travel inline)",
      { a: 1 },
      argsRefOf(canonicalBytes({ a: 1 })),
      false,
    ],
  ];
  it.each(SAME)("payloads - the argument-equality rule: %s: %s", (_name, a, b, want) => {
    expect(sameArguments(a as never, b as never)).toBe(want);
  });
});
