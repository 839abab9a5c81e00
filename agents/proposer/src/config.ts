// The proposer's sizes, documented where they are declared. Its environment: the variables
// every agent reads (@trias/runtime, env.ts) and the model's (@trias/llm, LlmEnvSchema).

/**
 * Runs whose task and plan the proposer keeps in memory. A run evicted from it has its task
 * read back from the trace when its next step is due.
 * @default 2_000
 */
export const PLAN_CACHE_RUNS = 2_000;
