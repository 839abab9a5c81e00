import { describe, expect, it } from "vitest";
import { boundedAdd, boundedSet } from "./bounded.js";

describe("bounded caches", () => {
  it("bounded - a map keeps at most its limit, dropping the oldest insertion first", () => {
    const m = new Map<string, number>();
    for (let i = 0; i < 5; i++) boundedSet(m, `k${i}`, i, 3);
    expect([...m.keys()]).toEqual(["k2", "k3", "k4"]);
    // Replacing a present key evicts nothing.
    boundedSet(m, "k2", 20, 3);
    expect([...m.entries()]).toEqual([
      ["k2", 20],
      ["k3", 3],
      ["k4", 4],
    ]);
  });

  it("bounded - a set keeps at most its limit, dropping the oldest insertion first", () => {
    const s = new Set<number>();
    for (let i = 0; i < 4; i++) boundedAdd(s, i, 2);
    expect([...s]).toEqual([2, 3]);
    boundedAdd(s, 3, 2);
    expect([...s]).toEqual([2, 3]);
  });

  it("bounded - a large cache drops its oldest sixteenth at once, never more than that", () => {
    const s = new Set<number>();
    for (let i = 0; i < 64; i++) boundedAdd(s, i, 64);
    expect(s.size).toBe(64);
    boundedAdd(s, 64, 64);
    expect([...s]).toEqual(Array.from({ length: 60 }, (_, i) => i + 5));
    for (let i = 65; i < 1_000; i++) boundedAdd(s, i, 64);
    expect(s.size).toBeLessThanOrEqual(64);
    expect(s.size).toBeGreaterThanOrEqual(60);
    expect(s.has(999)).toBe(true);
    expect(Math.min(...s)).toBe(1_000 - s.size);
  });
});
