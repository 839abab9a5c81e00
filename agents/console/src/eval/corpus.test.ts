import { describe, expect, it } from "vitest";
import { ledgerCorpus } from "./corpus.js";

describe("governance corpus", () => {
  it("corpus - at least 150 labelled tasks, unique ids, the same every time", () => {
    const c = ledgerCorpus();
    expect(c.length).toBeGreaterThanOrEqual(150);
    expect(new Set(c.map((t) => t.id)).size).toBe(c.length);
    expect(ledgerCorpus()).toEqual(c);
  });

  it("corpus - every seeded bad task must end refused, every good one completed; a denial is labelled on the bad step only", () => {
    for (const t of ledgerCorpus()) {
      expect(t.outcome, t.id).toBe(t.seededBad ? "rejected" : "completed");
      expect(t.tiers.length, t.id).toBeGreaterThanOrEqual(1);
      const denied = t.tiers.filter((x) => x === null).length;
      if (!t.seededBad) expect(denied, t.id).toBe(0);
      if (denied > 0) expect(t.tiers.at(-1), t.id).toBeNull();
    }
    expect(ledgerCorpus().filter((t) => t.seededBad).length).toBeGreaterThanOrEqual(30);
  });
});
