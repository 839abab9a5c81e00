import { isArgsRef } from "@trias/protocol";
import { z } from "zod";
import type { LoadedPolicy } from "./load.js";
import { DEFAULT_MAX_ARGUMENT_BYTES, RateLimit, type ToolEntry } from "./schema.js";

/** The policy's bound on a step argument carried by reference (`limits.maxArgumentBytes`). */
export function maxArgumentBytes(policy: LoadedPolicy): number {
  return policy.doc.limits?.maxArgumentBytes ?? DEFAULT_MAX_ARGUMENT_BYTES;
}

/**
 * Pure: null when a step's arguments are within the policy's bound, else why not. Inline
 * arguments always are (they fit a frame, and the bound is at least a frame); a reference is
 * judged by the size it declares, before a byte of it is read, and the reader then checks
 * that the bytes it gets are exactly that many (docs/security.md, "Bounded messages").
 */
export function checkArgumentSize(policy: LoadedPolicy, args: unknown): string | null {
  if (!isArgsRef(args)) return null;
  const max = maxArgumentBytes(policy);
  if (args.bytes <= max) return null;
  return `the step's arguments are ${args.bytes} bytes, over the ${policy.doc.environment} policy's limits.maxArgumentBytes of ${max}: refused before any review or effect; send smaller arguments or raise the limit`;
}

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

/** The rate limit a tool entry declares, `ratePerMinute` read as its shorthand; null if none. */
export function rateLimitOf(entry: ToolEntry): RateLimit | null {
  if (entry.rateLimit) return entry.rateLimit;
  if (entry.ratePerMinute !== undefined) return RateLimit.parse({ calls: entry.ratePerMinute });
  return null;
}

/** Every tool of the policy that has a rate limit, with it. */
export function rateLimitsOf(policy: LoadedPolicy): Map<string, RateLimit> {
  const limits = new Map<string, RateLimit>();
  for (const [tool, entry] of Object.entries(policy.doc.tools)) {
    const l = rateLimitOf(entry);
    if (l) limits.set(tool, l);
  }
  return limits;
}

/** What the router does with a step under a tool's rate limit now. */
export type RateDecision =
  | { type: "assign" }
  | { type: "delay"; ms: number; reason: string }
  | { type: "deny"; reason: string };

export interface RateQuery {
  tool: string;
  environment: string;
  limit: RateLimit;
  /** Accepted call times of the tool, oldest first (calls after `nowMs` count too). */
  calls: readonly number[];
  nowMs: number;
  /** When the step was proposed: what it has waited counts towards `limit.maxDelayMs`. */
  proposedAtMs: number;
}

/**
 * Pure: assign the step, hold it back for `ms`, or deny it, from the calls the limiter has
 * accepted and the tool's limit. A step is delayed until the oldest call in the window
 * leaves it; if that would take it past `maxDelayMs` from its proposal it is denied now, so a
 * run never waits for a rate forever. Times that are not finite are denied: a limit that
 * cannot be compared cannot be enforced.
 */
export function decideRate(q: RateQuery): RateDecision {
  const { tool, limit, nowMs } = q;
  if (!Number.isFinite(nowMs) || !Number.isFinite(q.proposedAtMs))
    return { type: "deny", reason: `rate limit: time ${String(nowMs)} is not a finite number` };
  const from = nowMs - limit.windowMs;
  let first = 0;
  while (first < q.calls.length && (q.calls[first] ?? 0) <= from) first++;
  // Calls stamped after `now` (a clock that went back) still count: the strict side.
  const inWindow = q.calls.length - first;
  if (inWindow < limit.calls) return { type: "assign" };
  // Room comes when enough of the oldest calls leave the window for one more to fit.
  const freeing = q.calls[q.calls.length - limit.calls] ?? nowMs;
  const waitMs = Math.max(1, freeing + limit.windowMs - nowMs);
  const rule = `${tool} allows ${limit.calls} call(s) per ${limit.windowMs / 1000} s in ${q.environment}, ${inWindow} in the window`;
  if (limit.onExceed === "deny")
    return {
      type: "deny",
      reason: `rate limit: ${rule}; retry in ${Math.ceil(waitMs / 1000)} s`,
    };
  const waited = Math.max(0, nowMs - q.proposedAtMs);
  if (waited + waitMs > limit.maxDelayMs)
    return {
      type: "deny",
      reason: `rate limit: ${rule}; the step has waited ${Math.round(waited / 1000)} s and would need ${Math.ceil(waitMs / 1000)} s more, past the policy's maxDelayMs of ${limit.maxDelayMs / 1000} s: submit it again later or raise the limit`,
    };
  return {
    type: "delay",
    ms: waitMs,
    reason: `rate limit: ${rule}; retry in ${Math.ceil(waitMs / 1000)} s`,
  };
}

/** A shared window as stored (the rates bucket): each accepted call's proposal id and time. */
export const SharedWindowSchema = z.object({
  calls: z.array(z.object({ id: z.string(), at: z.number().finite() })),
});
/** One accepted call in a shared window: the proposal it admitted (a repeat counts once) and when. */
export type AcceptedCall = z.infer<typeof SharedWindowSchema>["calls"][number];

/**
 * Pure: the decision for proposal `id`'s call under a window every router replica shares
 * (docs/rate-limits.md), and the window to store when the call is admitted (null: store
 * nothing). A proposal already in the window is admitted again without counting twice: a
 * redelivery, or a replica replaying what another left, is the same call. The window keeps
 * only calls a later query can see.
 */
export function admitCall(
  q: Omit<RateQuery, "calls"> & { id: string; window: readonly AcceptedCall[] },
): { decision: RateDecision; window: AcceptedCall[] | null } {
  if (q.window.some((c) => c.id === q.id)) return { decision: { type: "assign" }, window: null };
  const calls = q.window.map((c) => c.at).sort((a, b) => a - b);
  const decision = decideRate({ ...q, calls });
  if (decision.type !== "assign") return { decision, window: null };
  const newest = Math.max(q.nowMs, ...calls);
  const window = [...q.window, { id: q.id, at: q.nowMs }]
    .filter((c) => c.at > newest - q.limit.windowMs)
    .sort((a, b) => a.at - b.at);
  return { decision, window };
}

/**
 * Per-tool sliding-window limiter over each tool's rate limit (rateLimitOf). Deterministic:
 * the caller passes the time, so a router can feed it timestamps from the trace and a replay
 * gives the same answers. State is per instance: replicas that must share a limit have to
 * share the timestamps (for instance by folding them from the stream), which this does not do.
 */
export class RateLimiter {
  readonly #limits: ReadonlyMap<string, RateLimit>;
  readonly #env: string;
  /** Accepted call times per tool, oldest first. */
  readonly #calls = new Map<string, number[]>();

  constructor(policy: LoadedPolicy) {
    this.#limits = rateLimitsOf(policy);
    this.#env = policy.doc.environment;
  }

  /** The decision for a call to `tool` at `nowMs` proposed at `proposedAtMs`; does not record it. */
  decide(tool: string, nowMs: number, proposedAtMs = nowMs): RateDecision {
    const limit = this.#limits.get(tool);
    // The hot path for tools without a limit: one map lookup.
    if (limit === undefined) return { type: "assign" };
    return decideRate({
      tool,
      environment: this.#env,
      limit,
      calls: this.#calls.get(tool) ?? [],
      nowMs,
      proposedAtMs,
    });
  }

  /** Decide and, when assigned, record the call. */
  admit(tool: string, nowMs: number, proposedAtMs = nowMs): RateDecision {
    const d = this.decide(tool, nowMs, proposedAtMs);
    if (d.type === "assign") this.record(tool, nowMs);
    return d;
  }

  /** Null if a call to `tool` at `nowMs` would be assigned now, else why not; does not record it. */
  check(tool: string, nowMs: number): string | null {
    const d = this.decide(tool, nowMs);
    return d.type === "assign" ? null : d.reason;
  }

  /** Check and, when allowed, record the call. */
  take(tool: string, nowMs: number): string | null {
    const refusal = this.check(tool, nowMs);
    if (refusal === null) this.record(tool, nowMs);
    return refusal;
  }

  /** Record a call that already happened (replaying the trace after a restart). */
  record(tool: string, atMs: number): void {
    const limit = this.#limits.get(tool);
    if (!limit || !Number.isFinite(atMs)) return;
    let calls = this.#calls.get(tool);
    if (!calls) this.#calls.set(tool, (calls = []));
    // Keep order even if replicas' clocks or a replay deliver times out of order.
    let i = calls.length;
    while (i > 0 && (calls[i - 1] ?? 0) > atMs) i--;
    calls.splice(i, 0, atMs);
    // Forget what no query at or after the newest call can see, so memory stays bounded.
    const newest = calls[calls.length - 1] ?? atMs;
    let drop = 0;
    while (drop < calls.length && (calls[drop] ?? 0) <= newest - limit.windowMs) drop++;
    if (drop > 0) calls.splice(0, drop);
  }
}
