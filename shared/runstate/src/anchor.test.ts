import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import type { ReceiptCheckpoint } from "@trias/protocol";
import { ANCHOR_GENESIS, anchorLink, checkAnchorChain } from "./index.js";

function chain(runs: string[]): ReceiptCheckpoint[] {
  const out: ReceiptCheckpoint[] = [];
  let prev = ANCHOR_GENESIS;
  runs.forEach((run, i) => {
    const n = i + 1;
    const head = createHash("sha256").update(`head of ${run}`).digest("hex");
    const closeSeq = 10 * n;
    const anchor = anchorLink(prev, n, run, closeSeq, head);
    out.push({
      v: 1,
      n,
      run,
      closeSeq,
      outcome: "completed",
      receipt: { alg: "sha256-chain/v1", head, events: 5, firstSeq: 1, lastSeq: closeSeq - 1 },
      prev,
      anchor,
      at: 0,
    });
    prev = anchor;
  });
  return out;
}

describe("anchor - the chain of closed runs", () => {
  it("anchor - the formula is the one docs/receipts.md writes out", () => {
    const prev = "ab".repeat(32);
    const head = "cd".repeat(32);
    const seq = (v: number) => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64BE(BigInt(v));
      return b;
    };
    const want = createHash("sha256")
      .update("trias-anchor-v1|")
      .update(Buffer.from(prev, "hex"))
      .update(seq(7))
      .update(createHash("sha256").update("run-é").digest())
      .update(seq(2 ** 40))
      .update(Buffer.from(head, "hex"))
      .digest("hex");
    expect(anchorLink(prev, 7, "run-é", 2 ** 40, head)).toBe(want);
    expect(() => anchorLink(prev, -1, "r", 1, head)).toThrow(RangeError);
    expect(() => anchorLink("xyz", 1, "r", 1, head)).toThrow(RangeError);
  });

  const cases: {
    name: string;
    edit: (c: ReceiptCheckpoint[]) => ReceiptCheckpoint[];
    want: RegExp | null;
  }[] = [
    { name: "an intact chain", edit: (c) => c, want: null },
    { name: "the same chain read in any order", edit: (c) => [...c].reverse(), want: null },
    {
      name: "a run anchored twice with the same receipt (a crash between writes)",
      edit: (c) => {
        const last = c[c.length - 1] as ReceiptCheckpoint;
        const again = { ...(c[1] as ReceiptCheckpoint), n: last.n + 1, prev: last.anchor };
        again.anchor = anchorLink(
          again.prev,
          again.n,
          again.run,
          again.closeSeq,
          again.receipt.head,
        );
        return [...c, again];
      },
      want: null,
    },
    {
      name: "a deleted entry",
      edit: (c) => c.filter((e) => e.n !== 2),
      want: /checkpoint 2 is missing/,
    },
    {
      name: "a rewritten receipt head",
      edit: (c) =>
        c.map((e) => (e.n === 3 ? { ...e, receipt: { ...e.receipt, head: "0".repeat(64) } } : e)),
      want: /checkpoint 3 \(run r3\): its anchor does not recompute/,
    },
    {
      name: "an entry re-chained after another (a fork)",
      edit: (c) =>
        c.map((e) => {
          if (e.n !== 3) return e;
          const prev = ANCHOR_GENESIS;
          return { ...e, prev, anchor: anchorLink(prev, e.n, e.run, e.closeSeq, e.receipt.head) };
        }),
      want: /checkpoint 3 \(run r3\) does not follow checkpoint 2/,
    },
    {
      name: "a run anchored twice with different receipts",
      edit: (c) => {
        const last = c[c.length - 1] as ReceiptCheckpoint;
        const head = "1".repeat(64);
        const again = {
          ...(c[0] as ReceiptCheckpoint),
          n: last.n + 1,
          prev: last.anchor,
          receipt: { ...(c[0] as ReceiptCheckpoint).receipt, head },
        };
        again.anchor = anchorLink(again.prev, again.n, again.run, again.closeSeq, head);
        return [...c, again];
      },
      want: /run r1 is anchored twice with different receipts/,
    },
  ];
  for (const c of cases) {
    it(`anchor - ${c.name}: ${c.want === null ? "verifies" : "is named"}`, () => {
      const r = checkAnchorChain(c.edit(chain(["r1", "r2", "r3", "r4"])));
      if (c.want === null) {
        expect(r.problems).toEqual([]);
        expect(r.ok).toBe(true);
        expect([...r.runs.keys()].sort()).toEqual(["r1", "r2", "r3", "r4"]);
      } else {
        expect(r.ok).toBe(false);
        expect(r.problems.join("\n")).toMatch(c.want);
      }
    });
  }

  it("anchor - an empty chain has no head and no problem", () => {
    expect(checkAnchorChain([])).toMatchObject({ ok: true, head: null, problems: [] });
  });
});
