import { describe, expect, it } from "vitest";
import {
  canonicalBytes,
  decodeFrame,
  encode,
  encodeFrame,
  parseMessage,
  proposalDigest,
  MAX_FRAME_BYTES,
  ValidationError,
} from "./index.js";

const base = {
  tool: "ledger.transfer",
  args: { from: "a", to: "b", amount: 5 },
  run: "r1",
  step: 1,
  attempt: 0,
  policyDigest: "f".repeat(64),
};

describe("protocol codec", () => {
  it("protocol - canonical bytes do not depend on key order", () => {
    expect(Buffer.from(canonicalBytes({ b: 1, a: { y: [1, { d: 2, c: 3 }], x: "s" } }))).toEqual(
      Buffer.from(canonicalBytes({ a: { x: "s", y: [1, { c: 3, d: 2 }] }, b: 1 })),
    );
  });

  it("protocol - the proposal digest binds tool, args, run, step, attempt and policy", () => {
    const d = proposalDigest(base);
    expect(d).toMatch(/^[0-9a-f]{64}$/);
    expect(proposalDigest({ ...base, args: { amount: 5, to: "b", from: "a" } })).toBe(d);
    const variants = [
      { ...base, tool: "ledger.refund" },
      { ...base, args: { ...base.args, amount: 6 } },
      { ...base, run: "r2" },
      { ...base, step: 2 },
      { ...base, attempt: 1 },
      { ...base, policyDigest: "e".repeat(64) },
    ];
    for (const v of variants) expect(proposalDigest(v)).not.toBe(d);
  });

  it("protocol - frames refuse oversized, empty, unsigned and malformed input with a code", () => {
    const code = (f: () => unknown) => {
      try {
        f();
      } catch (e) {
        expect(e).toBeInstanceOf(ValidationError);
        return (e as ValidationError).code;
      }
      return "accepted";
    };
    expect(code(() => decodeFrame(new Uint8Array(MAX_FRAME_BYTES + 1)))).toBe("frame_oversized");
    expect(code(() => decodeFrame(new Uint8Array(0)))).toBe("frame_malformed");
    expect(code(() => decodeFrame(encode({ kind: "verdict", body: {} })))).toBe(
      "signature_missing",
    );
    expect(code(() => decodeFrame(encode([2, "k", new Uint8Array(64), new Uint8Array(1)])))).toBe(
      "frame_malformed",
    );
    expect(code(() => decodeFrame(encode([1, "k", new Uint8Array(0), new Uint8Array(1)])))).toBe(
      "signature_missing",
    );
    expect(code(() => decodeFrame(new Uint8Array([0xc1])))).toBe("frame_malformed");
    const ok = decodeFrame(
      encodeFrame({ kid: "k", sig: new Uint8Array(64).fill(1), payload: new Uint8Array([1, 2]) }),
    );
    expect(ok.kid).toBe("k");
    expect([...ok.payload]).toEqual([1, 2]);
  });

  it("protocol - schema errors name the field that is wrong", () => {
    expect(() => parseMessage({ v: 1, kind: "verdict" })).toThrow(/schema/);
    try {
      parseMessage({
        v: 1,
        id: "12345678",
        kind: "task_submitted",
        run: "bad run!",
        step: null,
        attempt: 0,
        sender: "k",
        role: "console",
        issuedAt: 1,
        expiresAt: 2,
        trace: null,
        body: { goal: "", program: "p", input: {}, requestedBy: "x" },
      });
    } catch (e) {
      expect((e as Error).message).toMatch(/run/);
      expect((e as Error).message).toMatch(/goal/);
      return;
    }
    throw new Error("expected a schema error");
  });
});
