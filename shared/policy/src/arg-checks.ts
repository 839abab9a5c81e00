import type { LoadedPolicy } from "./load.js";

export interface ArgCheckVerdict {
  decision: "approve" | "reject" | "revise";
  reasons: string[];
}

/**
 * Pure: the policy's argument checks for one proposal (the rules reviewer's limits). Every
 * check that holds gives its message; a reject outweighs a revise. A check that cannot be
 * evaluated on these arguments rejects (fail closed), saying so.
 */
export function checkArguments(
  policy: LoadedPolicy,
  tool: string,
  args: Record<string, unknown>,
): ArgCheckVerdict {
  const entry = policy.doc.tools[tool];
  const checks = policy.argChecks?.get(tool) ?? [];
  const rejects: string[] = [];
  const revises: string[] = [];
  for (const { check, condition } of checks) {
    let hit: boolean;
    try {
      hit = condition.evaluate({
        tool,
        args,
        op: entry?.op ?? "irreversible",
        domains: entry?.domains ?? [],
        run: {},
        env: policy.doc.environment,
      });
    } catch (e) {
      rejects.push(`check ${check.id} could not be evaluated: ${(e as Error).message}`);
      continue;
    }
    if (!hit) continue;
    (check.decision === "revise" ? revises : rejects).push(`${check.id}: ${check.message}`);
  }
  if (rejects.length > 0) return { decision: "reject", reasons: rejects };
  if (revises.length > 0) return { decision: "revise", reasons: revises };
  return {
    decision: "approve",
    reasons: checks.length > 0 ? [`${tool}: ${checks.length} policy check(s) passed`] : [],
  };
}
