import { describe, expect, it } from "vitest";
import { ReplayWindow } from "./replay.js";

describe("replay window", () => {
  it("replay window - gives the first sequence of an id, nothing for one never seen", () => {
    const w = new ReplayWindow(4);
    w.remember("a", 10, 1_000, 0);
    expect(w.firstSeen("a")).toBe(10);
    expect(w.firstSeen("b")).toBeUndefined();
  });

  it("replay window - forgets expired ids first and the oldest when full", () => {
    const w = new ReplayWindow(3);
    w.remember("a", 1, 100, 0);
    w.remember("b", 2, 200, 0);
    w.remember("c", 3, 300, 0);
    w.remember("d", 4, 400, 0); // full: a goes
    expect([..."abcd"].map((id) => w.firstSeen(id))).toEqual([undefined, 2, 3, 4]);
    w.remember("e", 5, 500, 250); // b expired before 250: b goes, nothing else
    expect([..."bcde"].map((id) => w.firstSeen(id))).toEqual([undefined, 3, 4, 5]);
    expect(w.size).toBe(3);
  });

  it("replay window - agrees with a plain map over 20,000 random operations on a crowded table", () => {
    // A small ring wraps often and its index collides often, which is where removal from an
    // open-addressing table goes wrong if it does.
    const cap = 37;
    const w = new ReplayWindow(cap);
    const model = new Map<string, { seq: number; expiresAt: number }>();
    let seed = 7;
    const rand = (n: number) => {
      seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
      return seed % n;
    };
    let now = 0;
    for (let i = 0; i < 20_000; i++) {
      now += rand(3);
      const id = `id-${rand(120)}`;
      const expected = model.get(id)?.seq;
      expect(w.firstSeen(id)).toBe(expected);
      if (expected === undefined) {
        const expiresAt = now + 20 + rand(40);
        for (const [k, v] of model) {
          if (v.expiresAt >= now && model.size < cap) break;
          model.delete(k);
        }
        model.set(id, { seq: i, expiresAt });
        w.remember(id, i, expiresAt, now);
      }
      expect(w.size).toBe(model.size);
    }
  });

  it("replay window - refuses a capacity that is not a positive integer", () => {
    expect(() => new ReplayWindow(0)).toThrow(/positive integer/);
  });
});
