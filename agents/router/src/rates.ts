// Rate limits counted by every router replica together (docs/rate-limits.md): each limited
// tool's window of accepted calls is a key of the rates bucket, changed by compare-and-set.
import { isRevisionConflict, type KeySwap } from "@trias/bus";
import {
  RateLimiter,
  admitCall,
  rateLimitsOf,
  SharedWindowSchema,
  type LoadedPolicy,
  type RateDecision,
} from "@trias/policy";
import type { RateLimit } from "@trias/policy";

/** The router's view of rate limits: a decision for proposal `id`'s call to `tool`. */
export interface Limiter {
  admit(tool: string, id: string, nowMs: number, proposedAtMs: number): Promise<RateDecision>;
}

/** One router alone (a trace without the rates bucket): the window in this process's memory. */
export function localLimiter(policy: LoadedPolicy): Limiter {
  const l = new RateLimiter(policy);
  return { admit: (tool, _id, now, proposedAt) => Promise.resolve(l.admit(tool, now, proposedAt)) };
}

/**
 * Compare-and-set attempts on one tool's window before the step is held back briefly instead:
 * only routers admitting the same tool at the same instant conflict.
 * @default 8
 */
const SHARED_ATTEMPTS = 8;

/**
 * How long a step waits when its tool's window stayed contended for every attempt.
 * @default 100 ms
 */
const CONTENDED_DELAY_MS = 100;

/** The window of every limited tool in KV, shared by the router replicas. */
export class SharedLimiter implements Limiter {
  readonly #kv: KeySwap;
  readonly #limits: ReadonlyMap<string, RateLimit>;
  readonly #env: string;

  constructor(policy: LoadedPolicy, kv: KeySwap) {
    this.#kv = kv;
    this.#limits = rateLimitsOf(policy);
    this.#env = policy.doc.environment;
  }

  async admit(
    tool: string,
    id: string,
    nowMs: number,
    proposedAtMs: number,
  ): Promise<RateDecision> {
    const limit = this.#limits.get(tool);
    // The hot path for tools without a limit: one map lookup, no read.
    if (limit === undefined) return { type: "assign" };
    const key = rateKey(tool);
    for (let attempt = 1; attempt <= SHARED_ATTEMPTS; attempt++) {
      const read = await this.#kv.read(key);
      // Only routers write the bucket; a window that does not parse is a fault, not a limit.
      const window = read.value
        ? SharedWindowSchema.parse(JSON.parse(new TextDecoder().decode(read.value))).calls
        : [];
      const r = admitCall({
        tool,
        environment: this.#env,
        limit,
        id,
        window,
        nowMs,
        proposedAtMs,
      });
      if (r.window === null) return r.decision;
      const bytes = new TextEncoder().encode(JSON.stringify({ calls: r.window }));
      try {
        await this.#kv.write(key, bytes, read.expect);
        return r.decision;
      } catch (err) {
        if (!isRevisionConflict(err)) throw err;
      }
    }
    return {
      type: "delay",
      ms: CONTENDED_DELAY_MS,
      reason: `rate limit: ${tool}'s window was changed by other routers ${SHARED_ATTEMPTS} times running; retry in ${CONTENDED_DELAY_MS} ms`,
    };
  }
}

/** A tool's key in the rates bucket (KV keys allow letters, digits and `-/_=.`). */
export function rateKey(tool: string): string {
  return tool.replace(/[^-/_=.a-zA-Z0-9]/g, "_");
}
