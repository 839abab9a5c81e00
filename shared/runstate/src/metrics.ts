import { boundedSet } from "@trias/protocol";
import type { RunState, Transition } from "./state.js";

/**
 * Execution topology metrics over a run's phase-level transitions.
 *
 * Entropy is taken over transition TYPES (`routed->approved`), not over step states: a
 * linear run repeats the same five types per step whatever its length, so its entropy is
 * bounded by log2 5 = 2.32 bits, under the entropy alarm; it would fire on any 7-step program
 * when every step counts as its own state. Retries, replans and rollbacks add new types and
 * repeat them, which is what raises the entropy of a thrashing run.
 */

export interface PathEntry {
  /** `from->to` */
  pair: string;
  step: number | null;
}

export interface TopologyMetrics {
  run: string;
  /** Distinct step indices the run reached. */
  steps: number;
  /** The transitions measured: all but those every run has exactly once (start, first proposal, close). */
  path: PathEntry[];
  /** Count per transition type, keys sorted. */
  pairs: Record<string, number>;
  /** Measured transitions per step index. */
  perStep: number[];
  /** H = -sum p log2 p over transition types. */
  entropyBits: number;
  /** H(next | prev): how unpredictable the next phase is given the current one (0 for a linear run). */
  conditionalEntropyBits: number;
  executions: number;
  compensations: number;
  retries: number;
  replans: number;
  /** Compensation executions per (non-compensation) execution. */
  rollbackDensity: number;
  /**
   * Transitions a step makes again that it already made (its second and later pass through
   * the same phase change): what a retry or replan loop adds, and a clean run never has.
   */
  loops: number;
}

export interface TopologyThresholds {
  /** Entropy of the transition types above which a run alarms (when also above its baseline's by the margin). */
  entropyBits: number;
  /** Compensations per execution above which a run alarms. */
  rollbackDensity: number;
  /** Entropy alarms only when it also exceeds the baseline's by this much. Default 0.25. */
  entropyMarginBits?: number;
  /** Loops (repeated transitions) per step at or above which a run alarms. Default 2. */
  loopsPerStep?: number;
  /** ...and only with at least this many loops. Default 6. */
  minLoops?: number;
}

/**
 * Calibrated on the labelled corpus (`trias eval`, docs/eval.md, "Topology alarms"): every
 * ordinary run there, rejected, denied, rolled back and retried once included, stays under
 * them, and every thrashing run is over at least one.
 * - loops: one retry adds 3 (the step passes routed, approved, executed again); ordinary runs
 *   reach 1 per step at most, thrashing ones 3 or more; 6 is two retries' worth, so one retry
 *   in a short run is not an alarm.
 * - rollback density: an ordinary rollback undoes some of the work (0.25 to 0.5 on the
 *   corpus); a run that undoes every effect it made, retries included, reaches 1.
 * - entropy: rollbacks raise it as much as thrashing does (3.24 bits against 2.9 to 3.42), so
 *   its threshold sits above every ordinary run and it is not what finds thrashing.
 * The policy's `metrics` defaults (shared/policy/src/schema.ts) carry the same two values.
 */
export const DEFAULT_TOPOLOGY_THRESHOLDS: Readonly<Required<TopologyThresholds>> = {
  entropyBits: 3.5,
  rollbackDensity: 0.75,
  entropyMarginBits: 0.25,
  loopsPerStep: 2,
  minLoops: 6,
};

export interface TopologyAssessment {
  alarm: boolean;
  reasons: string[];
  pathVariance: number;
  sequenceVariance: number;
  /** Entropy of the reference path the run was compared with. */
  baselineEntropyBits: number;
}

/** Transitions that every run makes once, whatever its shape; they carry no topology. */
function measured(t: Transition): boolean {
  return t.from !== "new" && t.from !== "open" && t.to !== "closed";
}

export function topologyMetrics(
  source: RunState | readonly Transition[],
  run = "",
): TopologyMetrics {
  const transitions = isState(source) ? source.transitions : source;
  const name = isState(source) ? source.run : run;
  const path: PathEntry[] = transitions
    .filter(measured)
    .map((t) => ({ pair: `${t.from}->${t.to}`, step: t.step }));
  const counts = new Map<string, number>();
  for (const p of path) counts.set(p.pair, (counts.get(p.pair) ?? 0) + 1);
  const pairs: Record<string, number> = {};
  for (const k of [...counts.keys()].sort()) pairs[k] = counts.get(k) ?? 0;

  let steps = 0;
  for (const t of transitions) if (t.step !== null) steps = Math.max(steps, t.step + 1);
  const perStep: number[] = Array.from({ length: steps }, () => 0);
  for (const p of path)
    if (p.step !== null && p.step < steps) perStep[p.step] = (perStep[p.step] ?? 0) + 1;

  const into = (phase: string) => transitions.filter((t) => t.to === phase).length;
  const seen = new Set<string>();
  let loops = 0;
  for (const p of path) {
    const k = `${p.step ?? "-"}:${p.pair}`;
    if (seen.has(k)) loops++;
    else seen.add(k);
  }
  const executions = into("executed");
  const compensations = into("compensation_executed");
  return {
    run: name,
    steps,
    path,
    pairs,
    perStep,
    entropyBits: entropy([...counts.values()]),
    conditionalEntropyBits: conditionalEntropy(path),
    executions,
    compensations,
    retries: into("retrying"),
    replans: into("replanning"),
    rollbackDensity:
      executions === 0 ? (compensations > 0 ? compensations : 0) : compensations / executions,
    loops,
  };
}

/**
 * The transitions of a clean linear run of `steps` steps, exactly as the reducer records
 * them: the reference when a program has no recorded baseline yet.
 */
export function linearTransitions(steps: number): Transition[] {
  const out: Transition[] = [{ from: "new", to: "open", seq: 1, step: null }];
  let seq = 1;
  for (let i = 0; i < steps; i++) {
    out.push({ from: i === 0 ? "open" : "passed", to: "proposed", seq: ++seq, step: i });
    out.push({ from: "proposed", to: "routed", seq: ++seq, step: i });
    out.push({ from: "routed", to: "approved", seq: ++seq, step: i });
    out.push({ from: "approved", to: "executed", seq: ++seq, step: i });
    out.push({ from: "executed", to: "passed", seq: ++seq, step: i });
  }
  out.push({ from: steps === 0 ? "open" : "passed", to: "closed", seq: ++seq, step: null });
  return out;
}

export function linearBaseline(steps: number): TopologyMetrics {
  // Asked for at every run's close, and a pure function of the step count: kept, frozen.
  let m = baselines.get(steps);
  if (m === undefined) {
    m = topologyMetrics(linearTransitions(steps), "baseline");
    for (const p of m.path) Object.freeze(p);
    Object.freeze(m.path);
    Object.freeze(m.pairs);
    Object.freeze(m.perStep);
    Object.freeze(m);
    boundedSet(baselines, steps, m, 256);
  }
  return m;
}

const baselines = new Map<number, TopologyMetrics>();

/**
 * The path the run is held against: the baseline's segment for each step the run reached,
 * and a clean linear segment for any step the baseline lacks. Only the steps the run reached
 * count, so a run that stops early is judged on what it did, not on what it never started.
 */
function reference(m: TopologyMetrics, baseline: TopologyMetrics | undefined): PathEntry[] {
  const linear = linearBaseline(m.steps);
  const out: PathEntry[] = [];
  for (let i = 0; i < m.steps; i++) {
    const fromBase =
      baseline && i < baseline.steps ? baseline.path.filter((p) => p.step === i) : [];
    out.push(...(fromBase.length > 0 ? fromBase : linear.path.filter((p) => p.step === i)));
  }
  return out;
}

/** Mean squared difference between the run's per-step path length and the reference's. */
export function pathVariance(m: TopologyMetrics, baseline?: TopologyMetrics): number {
  if (m.steps === 0) return 0;
  const ref = reference(m, baseline);
  let sum = 0;
  for (let i = 0; i < m.steps; i++) {
    const want = ref.filter((p) => p.step === i).length;
    const d = (m.perStep[i] ?? 0) - want;
    sum += d * d;
  }
  return sum / m.steps;
}

// Past this many cells the edit distance would cost more than the run; a multiset difference
// is the same measure without order and is what very long runs get.
const MAX_EDIT_CELLS = 4_000_000;

/** Edit distance between the run's transition sequence and the reference's, per reference transition. */
export function sequenceVariance(m: TopologyMetrics, baseline?: TopologyMetrics): number {
  const a = m.path.map((p) => p.pair);
  const b = reference(m, baseline).map((p) => p.pair);
  const denom = Math.max(b.length, 1);
  if (a.length * b.length > MAX_EDIT_CELLS) {
    const diff = new Map<string, number>();
    for (const x of a) diff.set(x, (diff.get(x) ?? 0) + 1);
    for (const x of b) diff.set(x, (diff.get(x) ?? 0) - 1);
    let d = 0;
    for (const v of diff.values()) d += Math.abs(v);
    return d / denom;
  }
  return editDistance(a, b) / denom;
}

/**
 * The topology alarm: one pure function, its thresholds calibrated on the corpus (see
 * DEFAULT_TOPOLOGY_THRESHOLDS). Path and sequence variance against the baseline are measured
 * and reported, but do not alarm: a run that stops (a denial, a veto, a rollback) differs from
 * a completed run's path as much as a thrashing one does.
 */
export function assessTopology(
  m: TopologyMetrics,
  thresholds: TopologyThresholds,
  baseline?: TopologyMetrics,
): TopologyAssessment {
  const t = { ...DEFAULT_TOPOLOGY_THRESHOLDS, ...definedOnly(thresholds) };
  const ref = reference(m, baseline);
  const refCounts = new Map<string, number>();
  for (const p of ref) refCounts.set(p.pair, (refCounts.get(p.pair) ?? 0) + 1);
  const baselineEntropyBits = entropy([...refCounts.values()]);
  const reasons: string[] = [];
  const perStep = m.loops / Math.max(1, m.steps);
  if (m.loops >= t.minLoops && perStep >= t.loopsPerStep) {
    reasons.push(
      `${m.loops} repeated transitions (${fmt(perStep)} per step, ${m.retries} retries, ${m.replans} replans) reach ${fmt(t.loopsPerStep)} per step`,
    );
  }
  if (m.entropyBits > t.entropyBits && m.entropyBits > baselineEntropyBits + t.entropyMarginBits) {
    reasons.push(
      `transition entropy ${fmt(m.entropyBits)} bits exceeds ${fmt(t.entropyBits)} and the baseline's ${fmt(baselineEntropyBits)} by more than ${fmt(t.entropyMarginBits)}`,
    );
  }
  if (m.rollbackDensity > t.rollbackDensity) {
    reasons.push(
      `rollback density ${fmt(m.rollbackDensity)} exceeds ${fmt(t.rollbackDensity)} (${m.compensations} compensations for ${m.executions} executions)`,
    );
  }
  return {
    alarm: reasons.length > 0,
    reasons,
    pathVariance: pathVariance(m, baseline),
    sequenceVariance: sequenceVariance(m, baseline),
    baselineEntropyBits,
  };
}

// ---------------------------------------------------------------------------------------

function isState(x: RunState | readonly Transition[]): x is RunState {
  return !Array.isArray(x);
}

function entropy(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  if (total === 0) return 0;
  let h = 0;
  for (const c of counts) {
    if (c <= 0) continue;
    const p = c / total;
    h -= p * Math.log2(p);
  }
  return h;
}

function conditionalEntropy(path: readonly PathEntry[]): number {
  const byPrev = new Map<string, Map<string, number>>();
  for (const p of path) {
    const [from = "", to = ""] = p.pair.split("->");
    const row = byPrev.get(from) ?? new Map<string, number>();
    row.set(to, (row.get(to) ?? 0) + 1);
    byPrev.set(from, row);
  }
  const total = path.length;
  if (total === 0) return 0;
  let h = 0;
  for (const row of byPrev.values()) {
    const counts = [...row.values()];
    const n = counts.reduce((a, b) => a + b, 0);
    h += (n / total) * entropy(counts);
  }
  return h;
}

function editDistance(a: readonly string[], b: readonly string[]): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      const sub = (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      cur.push(Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, sub));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}

function definedOnly(t: TopologyThresholds): Partial<Required<TopologyThresholds>> {
  const out: Partial<Required<TopologyThresholds>> = {};
  for (const [k, v] of Object.entries(t) as [keyof TopologyThresholds, number | undefined][]) {
    if (typeof v === "number" && Number.isFinite(v)) out[k] = v;
  }
  return out;
}

function fmt(n: number): string {
  return String(Math.round(n * 1000) / 1000);
}
