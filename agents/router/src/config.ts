// The router's sizes, documented where they are declared. Its environment: the variables
// every agent reads (@trias/runtime, env.ts).

/**
 * Runs whose budget context (steps, tokens, cost so far) the router keeps in memory. A run
 * evicted from it has its context rebuilt from the trace at its next step.
 * @default 5_000
 */
export const RUN_CACHE_ENTRIES = 5_000;

/**
 * Proposals the router remembers holding back for a rate limit, so their assignment can say
 * how long they waited. One forgotten (or a router restarted meanwhile) is assigned without
 * that line; nothing else depends on it.
 * @default 5_000
 */
export const HELD_ENTRIES = 5_000;
