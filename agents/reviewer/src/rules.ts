import { checkArguments, type LoadedPolicy } from "@trias/policy";
import type { ReviewDecision, StepProposed } from "@trias/protocol";
import { checkArgs, type Catalogue } from "@trias/tools";

export interface RuleVerdict {
  decision: ReviewDecision;
  reasons: string[];
}

/**
 * The deterministic reviewer. Pure: the same proposal always gets the same verdict, with
 * every reason spelled out. It judges the action, never the tier (that is the router's):
 * the tool must be loaded, its arguments must satisfy the tool's own schema, and the
 * policy's argument checks for that tool (CEL, each with its message) must pass. It knows
 * no tool by name: a pack's limits live in the pack's schema and the policy.
 */
export function reviewByRules(
  p: StepProposed,
  tools: Catalogue,
  policy: LoadedPolicy,
): RuleVerdict {
  const reasons: string[] = [];
  const tool = tools.get(p.tool);
  if (!tool) return { decision: "reject", reasons: [`unknown tool "${p.tool}"`] };
  const args = checkArgs(tool, p.args);
  if (!args.ok) return { decision: "reject", reasons: [`arguments invalid: ${args.reason}`] };
  if (p.rationale.trim().length === 0) reasons.push("no rationale given");
  if (p.expected.trim().length === 0) reasons.push("no expected outcome given");
  if (reasons.length > 0) return { decision: "revise", reasons };
  const checked = checkArguments(policy, p.tool, p.args);
  if (checked.decision !== "approve") return checked;
  return {
    decision: "approve",
    reasons: [`${p.tool} with valid arguments within limits`, ...checked.reasons],
  };
}
