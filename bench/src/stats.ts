/** Nearest-rank percentile of an ascending array; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1));
  return sorted[i] ?? Number.NaN;
}

export interface Dist {
  n: number;
  p50: number;
  p99: number;
  mean: number;
}

export function dist(values: readonly number[]): Dist {
  const s = [...values].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return {
    n: s.length,
    p50: round(percentile(s, 0.5)),
    p99: round(percentile(s, 0.99)),
    mean: round(s.length > 0 ? sum / s.length : Number.NaN),
  };
}

export function round(x: number, digits = 3): number {
  if (!Number.isFinite(x)) return x;
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** `a / b`, rounded; NaN when either is missing. */
export function ratio(a: number, b: number): number {
  return b > 0 && Number.isFinite(a) ? round(a / b, 2) : Number.NaN;
}

/**
 * Run `one` with `inFlight` callers in a closed loop for `ms` milliseconds: each caller
 * starts its next step as soon as its last one is done. Returns every step's latency.
 */
export async function closedLoop(
  inFlight: number,
  ms: number,
  one: () => Promise<number>,
  maxSteps = Number.POSITIVE_INFINITY,
): Promise<{ latencies: number[]; wallMs: number; failures: string[] }> {
  const latencies: number[] = [];
  const failures: string[] = [];
  const t0 = performance.now();
  const end = t0 + ms;
  let last = t0;
  let started = 0;
  const worker = async (): Promise<void> => {
    while (performance.now() < end && started < maxSteps) {
      started++;
      try {
        latencies.push(await one());
      } catch (e) {
        failures.push(e instanceof Error ? e.message : String(e));
        return;
      } finally {
        last = performance.now();
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  return { latencies, wallMs: last - t0, failures };
}

/** A step the driver has started and is waiting to see come out at the far end. */
export interface Waiting {
  t0: number;
  resolve: (latencyMs: number) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
}
