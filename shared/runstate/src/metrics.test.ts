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

/** A run of `n` light steps where `shape` says what happens at which step. */
function shaped(
  name: string,
  n: number,
  shape: (t: TraceBuilder, i: number) => boolean,
): TraceBuilder {
  const t = new TraceBuilder(name);
  t.submit();
  for (let i = 0; i < n; i++) if (!shape(t, i)) t.step(i, n, "light");
  return t;
}

/** Step `i` fails once, then passes on its retry, proposed and routed again as the agents do. */
function retried(t: TraceBuilder, i: number, n: number): void {
  t.step(i, n, "light", "failed");
  t.recover(i, "retry", { nextAttempt: 1 });
  t.propose(i, n, { attempt: 1 });
  t.assign(i, "light");
  t.execute(i, { attempt: 1 });
  t.verify(i, "passed", 1);
}

describe("assessTopology - calibrated alarm (docs/eval.md, Topology alarms)", () => {
  // The shapes of the corpus's ordinary runs, and of its thrashing runs.
  const cases: [string, () => TraceBuilder, boolean][] = [
    ["a clean run of 1 step", () => TraceBuilder.linear("r1", 1), false],
    ["a clean run of 6 steps", () => TraceBuilder.linear("r6", 6), false],
    [
      "a step denied by the policy",
      () => {
        const t = shaped("deny", 1, () => false);
        t.propose(1, 2);
        t.assign(1, "light", { denied: "over the limit" });
        t.close("rejected", 2);
        return t;
      },
      false,
    ],
    [
      "a step vetoed by its reviewer",
      () => {
        const t = shaped("veto", 1, () => false);
        t.propose(1, 2);
        t.assign(1, "standard");
        t.verdict(1, "reviewer-1", "reject");
        t.close("rejected", 2);
        return t;
      },
      false,
    ],
    [
      "one retry in a 3-step run",
      () => {
        const t = shaped("once", 3, (b, i) => (i === 1 ? (retried(b, i, 3), true) : false));
        t.close();
        return t;
      },
      false,
    ],
    [
      "a failed check, its one earlier effect compensated",
      () => {
        const t = shaped("rollback", 2, (b, i) =>
          i === 1 ? (b.step(1, 2, "light", "failed"), true) : false,
        );
        t.recover(1, "rollback");
        t.compensate(0);
        t.close("rolled_back");
        return t;
      },
      false,
    ],
    [
      "every one of 4 steps retried",
      () => {
        const t = shaped("every", 4, (b, i) => (retried(b, i, 4), true));
        t.close();
        return t;
      },
      true,
    ],
    ["retries, a replan and a rollback on one step", thrashing, true],
  ];
  it.each(cases.map(([n, b, a]) => [n, a, b] as const))("%s -> alarm %s", (_name, alarm, build) => {
    const s = foldRun(build().events);
    expect(s.violations).toEqual([]);
    const m = topologyMetrics(s);
    const a = assessTopology(m, DEFAULT_TOPOLOGY_THRESHOLDS, linearBaseline(Math.max(1, m.steps)));
    expect(a.alarm, a.reasons.join("; ")).toBe(alarm);
  });

  const base = topologyMetrics(foldRun(TraceBuilder.linear("m", 4).events));
  it.each([
    ["5 loops in 1 step: under the minimum", { loops: 5, steps: 1 }, false],
    ["6 loops in 3 steps: 2 per step", { loops: 6, steps: 3 }, true],
    ["7 loops in 4 steps: under 2 per step", { loops: 7, steps: 4 }, false],
    ["rollback density 0.75", { rollbackDensity: 0.75 }, false],
    ["rollback density 0.8", { rollbackDensity: 0.8 }, true],
    ["entropy 3.5 bits", { entropyBits: 3.5 }, false],
    ["entropy 3.6 bits", { entropyBits: 3.6 }, true],
  ] as const)("thresholds - %s -> alarm %s", (_name, over, alarm) => {
    expect(assessTopology({ ...base, ...over }, DEFAULT_TOPOLOGY_THRESHOLDS).alarm).toBe(alarm);
  });
});

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
    expect(a.reasons.join("\n")).toMatch(/repeated transitions/);
    expect(a.pathVariance).toBeGreaterThan(2);
    expect(a.sequenceVariance).toBeGreaterThan(0.25);
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
