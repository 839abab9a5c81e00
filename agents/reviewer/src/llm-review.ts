import { z } from "zod";
import { ReviewDecision, type StepProposed } from "@trias/protocol";
import { project, type LlmClient } from "@trias/llm";
import type { Catalogue } from "@trias/tools";
import type { RuleVerdict } from "./rules.js";

const Answer = z.object({ decision: ReviewDecision, reasons: z.array(z.string()).min(1) });

const SYSTEM = `You review one proposed tool call before it runs. Judge whether the action is
sound, necessary and proportionate for its stated rationale. Answer only JSON:
{"decision": "approve" | "revise" | "reject" | "ask_user" | "escalate", "reasons": ["..."]}.`;

/**
 * The `llm` strategy. The model sees the action and its stated purpose, projected (no
 * secrets, personal data masked), and the tool's description; never who proposed it, the
 * tier, the policy or the other reviewers (evaluator blindness).
 */
export async function reviewWithLlm(
  llm: LlmClient,
  p: StepProposed,
  tools: Catalogue,
): Promise<RuleVerdict> {
  const tool = tools.get(p.tool);
  const user = JSON.stringify({
    tool: p.tool,
    tool_description: tool?.description ?? "unknown tool",
    args: project(p.args),
    rationale: project(p.rationale),
    expected_outcome: project(p.expected),
  });
  const { value } = await llm.json(
    "review",
    [
      { role: "system", content: SYSTEM },
      { role: "user", content: user },
    ],
    Answer,
  );
  return { decision: value.decision, reasons: value.reasons };
}
