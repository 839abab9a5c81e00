import { describe, expect, it } from "vitest";
import {
  DEFAULT_TOPOLOGY_THRESHOLDS,
  assessTopology,
  foldRun,
  linearBaseline,
  pathVariance,
  sequenceVariance,
  topologyMetrics,
} from "./index.js";
import { TraceBuilder } from "./test-support.js";

const T = { entropyBits: 2.5, rollbackDensity: 0.5 };

/** A 7-step program whose step 2 keeps failing: five retries, a replan, then a rollback. */
function thrashing(): TraceBuilder {
  const t = new TraceBuilder("run-thrash");
  t.submit();
  t.step(0, 7, "standard");
  t.step(1, 7, "standard");
  t.step(2, 7, "standard", "failed");
  for (let a = 1; a <= 5; a++) {
    t.recover(2, "retry", { nextAttempt: a });
    t.execute(2, { attempt: a });
    t.verify(2, "failed", a);
  }
  t.recover(2, "replan", { nextAttempt: 6 });
  t.propose(2, 7, {
    attempt: 6,
    replanOf: t.ctx(2).digest,
    args: { from: "a", to: "c", amount: 3 },
  });
  t.assign(2, "standard");
  t.approveFor(2);
  t.execute(2);
  t.verify(2, "failed");
  t.recover(2, "rollback");
  for (const i of [2, 1, 0]) t.compensate(i);
  t.close("rolled_back");
  return t;
}

describe("metrics - behaviour", () => {
  for (const n of [1, 7, 20, 100]) {
    it(`raises no alarm on a clean linear run of ${n} steps, with or without a baseline`, () => {
      const s = foldRun(TraceBuilder.linear(`run-linear-${n}`, n).events);
      expect(s.violations).toEqual([]);
      const m = topologyMetrics(s);
      expect(m.steps).toBe(n);
      expect(m.entropyBits).toBeLessThan(Math.log2(5) + 1e-9);
      expect(m.entropyBits).toBeLessThan(2.5);
      expect(m.conditionalEntropyBits).toBeLessThan(0.2);
      expect(m.rollbackDensity).toBe(0);
      expect(assessTopology(m, T)).toMatchObject({
        alarm: false,
        reasons: [],
        pathVariance: 0,
        sequenceVariance: 0,
      });
      expect(assessTopology(m, T, linearBaseline(n)).alarm).toBe(false);
      expect(assessTopology(m, DEFAULT_TOPOLOGY_THRESHOLDS).alarm).toBe(false);
    });
  }

  it("records exactly the transitions the synthesized linear baseline assumes", () => {
    const m = topologyMetrics(foldRun(TraceBuilder.linear("run-base", 7).events));
    const b = linearBaseline(7);
    expect(m.path).toEqual(b.path);
    expect(m.pairs).toEqual(b.pairs);
    expect(m.perStep).toEqual(b.perStep);
  });

  it("alarms on a thrashing run: entropy, path and sequence variance, rollback density", () => {
    const s = foldRun(thrashing().events);
    expect(s.violations).toEqual([]);
    expect(s.outcome).toBe("rolled_back");
    const m = topologyMetrics(s);
    expect(m.retries).toBe(5);
    expect(m.replans).toBe(1);
    expect(m.compensations).toBe(3);
    const a = assessTopology(m, T);
    expect(a.alarm).toBe(true);
    expect(a.reasons.join("\n")).toMatch(/transition entropy/);
    expect(a.reasons.join("\n")).toMatch(/path variance/);
    expect(a.reasons.join("\n")).toMatch(/sequence variance/);
    expect(m.entropyBits).toBeGreaterThan(2.5);
    expect(m.conditionalEntropyBits).toBeGreaterThan(0.3);
    // Against the program's own clean baseline, too.
    const base = topologyMetrics(foldRun(TraceBuilder.linear("run-clean", 7, ["standard"]).events));
    expect(assessTopology(m, T, base).alarm).toBe(true);
  });

  it("alarms on repeated retries alone, but not on one retry in a long run", () => {
    const loop = new TraceBuilder("run-loop");
    loop.submit();
    loop.step(0, 7, "light", "failed");
    for (let a = 1; a <= 4; a++) {
      loop.recover(0, "retry", { nextAttempt: a });
      loop.execute(0, { attempt: a });
      loop.verify(0, a === 4 ? "passed" : "failed", a);
    }
    for (let i = 1; i < 7; i++) loop.step(i, 7, "light");
    loop.close();
    const lm = topologyMetrics(foldRun(loop.events));
    expect(assessTopology(lm, T).alarm).toBe(true);

    const once = new TraceBuilder("run-once");
    once.submit();
    once.step(0, 20, "light", "failed");
    once.recover(0, "retry", { nextAttempt: 1 });
    once.execute(0, { attempt: 1 });
    once.verify(0, "passed", 1);
    for (let i = 1; i < 20; i++) once.step(i, 20, "light");
    once.close();
    const om = topologyMetrics(foldRun(once.events));
    expect(assessTopology(om, T)).toMatchObject({ alarm: false });
    expect(pathVariance(om)).toBeGreaterThan(0);
  });

  it("judges a run that stops early on the steps it reached", () => {
    const t = new TraceBuilder("run-early");
    t.submit();
    t.step(0, 7, "light");
    t.step(1, 7, "light", "failed");
    t.close("failed");
    const m = topologyMetrics(foldRun(t.events));
    const base = linearBaseline(7);
    expect(assessTopology(m, T, base).alarm).toBe(false);
    expect(sequenceVariance(m, base)).toBeGreaterThan(0);
  });

  it("is a pure function of the transitions", () => {
    const s = foldRun(thrashing().events);
    expect(topologyMetrics(s.transitions, s.run)).toEqual(topologyMetrics(s));
    expect(topologyMetrics(s)).toEqual(topologyMetrics(foldRun(thrashing().events)));
  });
});
