import type { LoadedPolicy } from "./load.js";

export interface BudgetUsage {
  steps: number;
  tokens: number;
  costUsd: number;
}

/**
 * Null while a run is within its policy's budget, otherwise the reason it is not.
 * `usage` is everything the run has consumed, counting the step about to run: reaching
 * a limit is allowed, passing it is not. Usage that is not a finite, non-negative number
 * is refused, since a budget that cannot be compared cannot be enforced.
 */
export function checkBudget(policy: LoadedPolicy, usage: Partial<BudgetUsage>): string | null {
  const b = policy.doc.budgets;
  const env = policy.doc.environment;
  const dims: [keyof BudgetUsage, string, number][] = [
    ["steps", "steps", b.steps],
    ["tokens", "tokens", b.tokens],
    ["costUsd", "USD", b.costUsd],
  ];
  for (const [key, unit, limit] of dims) {
    const used = usage[key] ?? 0;
    if (typeof used !== "number" || !Number.isFinite(used) || used < 0) {
      return `budget: ${key} usage ${String(used)} is not a finite non-negative number`;
    }
    if (used > limit) {
      return `budget exceeded: ${key === "costUsd" ? used.toFixed(4) : used} ${unit} used, the ${env} policy allows ${limit} per run`;
    }
  }
  return null;
}

/**
 * Per-tool sliding-window limiter over `ratePerMinute`. Deterministic: the caller passes
 * the time, so a router can feed it timestamps from the trace and a replay gives the same
 * answers. State is per instance; replicas that must share a limit have to share the
 * timestamps (for instance by folding them from the stream).
 */
export class RateLimiter {
  static readonly WINDOW_MS = 60_000;
  readonly #limits: ReadonlyMap<string, number>;
  readonly #env: string;
  /** Accepted call times per tool, oldest first. */
  readonly #calls = new Map<string, number[]>();

  constructor(policy: LoadedPolicy) {
    const limits = new Map<string, number>();
    for (const [tool, entry] of Object.entries(policy.doc.tools))
      if (entry.ratePerMinute !== undefined) limits.set(tool, entry.ratePerMinute);
    this.#limits = limits;
    this.#env = policy.doc.environment;
  }

  /** Null if a call to `tool` at `nowMs` is within the limit; does not record it. */
  check(tool: string, nowMs: number): string | null {
    const limit = this.#limits.get(tool);
    if (limit === undefined) return null;
    if (!Number.isFinite(nowMs)) return `rate limit: time ${String(nowMs)} is not a finite number`;
    const calls = this.#calls.get(tool) ?? [];
    const from = nowMs - RateLimiter.WINDOW_MS;
    let first = 0;
    while (first < calls.length && (calls[first] ?? 0) <= from) first++;
    // Calls stamped after `now` (a clock that went back) still count: the strict side.
    const inWindow = calls.length - first;
    if (inWindow < limit) return null;
    const oldest = calls[first] ?? nowMs;
    const retryS = Math.max(1, Math.ceil((oldest + RateLimiter.WINDOW_MS - nowMs) / 1000));
    return `rate limit: ${tool} allows ${limit} call(s) per minute in ${this.#env}, ${inWindow} in the last 60 s; retry in ${retryS} s`;
  }

  /** Check and, when allowed, record the call. */
  take(tool: string, nowMs: number): string | null {
    const refusal = this.check(tool, nowMs);
    if (refusal === null) this.record(tool, nowMs);
    return refusal;
  }

  /** Record a call that already happened (replaying the trace after a restart). */
  record(tool: string, atMs: number): void {
    if (!this.#limits.has(tool) || !Number.isFinite(atMs)) return;
    let calls = this.#calls.get(tool);
    if (!calls) this.#calls.set(tool, (calls = []));
    // Keep order even if replicas' clocks or a replay deliver times out of order.
    let i = calls.length;
    while (i > 0 && (calls[i - 1] ?? 0) > atMs) i--;
    calls.splice(i, 0, atMs);
    // Forget what no query at or after the newest call can see, so memory stays bounded.
    const newest = calls[calls.length - 1] ?? atMs;
    let drop = 0;
    while (drop < calls.length && (calls[drop] ?? 0) <= newest - RateLimiter.WINDOW_MS) drop++;
    if (drop > 0) calls.splice(0, drop);
  }
}
