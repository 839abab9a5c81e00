import { describe, expect, it } from "vitest";
import { CORPUS_PACKS, fullCorpus, ledgerCorpus } from "./corpus.js";
import { waves } from "./run.js";

const ROOT = "/srv/files";

describe("governance corpus", () => {
  it("corpus - at least 150 labelled tasks over the four packs, at least 20 in each, unique ids, the same every time", () => {
    const c = fullCorpus(ROOT);
    expect(c.length).toBeGreaterThanOrEqual(150);
    for (const p of CORPUS_PACKS)
      expect(c.filter((t) => t.pack === p).length, p).toBeGreaterThanOrEqual(20);
    expect(new Set(c.map((t) => t.id)).size).toBe(c.length);
    expect(fullCorpus(ROOT)).toEqual(c);
    expect(ledgerCorpus().length).toBeGreaterThanOrEqual(150);
  });

  it("corpus - a good task must complete, a seeded bad one must not; the bad step is a planned step; a denial is labelled on the bad step only", () => {
    for (const t of fullCorpus(ROOT)) {
      if (t.seededBad) expect(t.outcome, t.id).not.toBe("completed");
      else if (!t.thrashing) expect(t.outcome, t.id).toBe("completed");
      expect(t.tiers.length, t.id).toBeGreaterThanOrEqual(1);
      const bad = t.badStep ?? t.tiers.length - 1;
      expect(bad, t.id).toBeLessThan(t.tiers.length);
      const denied = t.tiers.flatMap((x, i) => (x === null ? [i] : []));
      if (!t.seededBad) expect(denied, t.id).toEqual([]);
      else if (denied.length > 0) expect(denied, t.id).toEqual([bad]);
      // Only a step a person must see gets a human decision in its label.
      if (t.human) expect(t.tiers, t.id).toContain("full");
    }
    for (const p of CORPUS_PACKS.filter((x) => x !== "recovery"))
      expect(
        fullCorpus(ROOT).filter((t) => t.pack === p && t.seededBad).length,
        p,
      ).toBeGreaterThanOrEqual(5);
    expect(fullCorpus(ROOT).filter((t) => t.thrashing).length).toBeGreaterThanOrEqual(10);
  });

  it("corpus - the filesystem tasks name files under the server's root only", () => {
    for (const t of fullCorpus(ROOT).filter((x) => x.pack === "fs"))
      for (const s of (t.task.input as { steps: { args: { path: string } }[] }).steps)
        expect(s.args.path.startsWith(ROOT), t.id).toBe(true);
  });

  it.each([
    [
      "one pack per wave, at most the concurrency",
      ["ledger", "ledger", "ledger", "kyc", "kyc"],
      2,
      [2, 1, 2],
    ],
    ["code changes one at a time", ["ledger", "code", "code", "fs"], 8, [1, 1, 1, 1]],
    ["nothing to run", [], 8, []],
  ] as const)("waves - %s", (_name, packs, concurrency, sizes) => {
    const tasks = packs.map((pack, i) => ({ ...ledgerCorpus()[0]!, id: `t-${i}`, pack }));
    const w = waves(tasks, concurrency);
    expect(w.map((x) => x.length)).toEqual(sizes);
    expect(w.flat().map((t) => t.id)).toEqual(tasks.map((t) => t.id));
    for (const x of w) expect(new Set(x.map((t) => t.pack)).size).toBe(1);
  });
});
