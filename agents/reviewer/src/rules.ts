import type { ReviewDecision, StepProposed } from "@trias/protocol";
import { checkArgs, type Catalogue } from "@trias/tools";

export interface RuleVerdict {
  decision: ReviewDecision;
  reasons: string[];
}

/** Limits the rules strategy enforces regardless of environment. */
export const RULE_LIMITS = {
  maxTransfer: 10_000,
  maxBatchTotal: 50_000,
  maxBatchSize: 50,
} as const;

/**
 * The deterministic reviewer. Pure: the same proposal always gets the same verdict, with
 * every reason spelled out. It judges the action, never the tier (that is the router's).
 */
export function reviewByRules(p: StepProposed, tools: Catalogue): RuleVerdict {
  const reasons: string[] = [];
  const tool = tools.get(p.tool);
  if (!tool) return { decision: "reject", reasons: [`unknown tool "${p.tool}"`] };
  const args = checkArgs(tool, p.args);
  if (!args.ok) return { decision: "reject", reasons: [`arguments invalid: ${args.reason}`] };
  if (p.rationale.trim().length === 0) reasons.push("no rationale given");
  if (p.expected.trim().length === 0) reasons.push("no expected outcome given");
  if (reasons.length > 0) return { decision: "revise", reasons };

  const amount = typeof p.args["amount"] === "number" ? p.args["amount"] : 0;
  if (p.tool === "ledger.transfer" && amount > RULE_LIMITS.maxTransfer) {
    return {
      decision: "reject",
      reasons: [`transfer of ${amount} exceeds the limit of ${RULE_LIMITS.maxTransfer}`],
    };
  }
  if (p.tool === "ledger.batch_payout") {
    const payouts = Array.isArray(p.args["payouts"])
      ? (p.args["payouts"] as { amount?: unknown; account?: unknown }[])
      : [];
    const total = payouts.reduce((n, x) => n + (typeof x.amount === "number" ? x.amount : 0), 0);
    const accounts = new Set(payouts.map((x) => String(x.account)));
    if (payouts.length > RULE_LIMITS.maxBatchSize)
      return {
        decision: "reject",
        reasons: [`batch of ${payouts.length} exceeds ${RULE_LIMITS.maxBatchSize} payouts`],
      };
    if (total > RULE_LIMITS.maxBatchTotal)
      return {
        decision: "reject",
        reasons: [`batch total ${total} exceeds ${RULE_LIMITS.maxBatchTotal}`],
      };
    if (accounts.size !== payouts.length)
      return { decision: "revise", reasons: ["an account appears twice in the batch"] };
    if (accounts.has("treasury"))
      return { decision: "reject", reasons: ["the treasury cannot pay itself"] };
  }
  if (p.tool === "ledger.close_account" && p.args["account"] === "treasury") {
    return { decision: "reject", reasons: ["the treasury account cannot be closed"] };
  }
  return { decision: "approve", reasons: [`${p.tool} with valid arguments within limits`] };
}
