// The facts a rule condition reads, in a module of its own so that the engine
// (conditions.ts) and its closure fast path (fast.ts) share them without importing each other.

/** What a condition can read about a step: the CEL variables of CONDITION_VARIABLES. */
export interface ConditionFacts {
  tool: string;
  op: string;
  domains: readonly string[];
  args: Record<string, unknown>;
  run: Record<string, unknown>;
  env: string;
}
