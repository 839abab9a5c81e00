import { z } from "zod";
import { type TaskSubmitted } from "@trias/protocol";
import { project, type LlmClient, type Usage } from "@trias/llm";
import type { Catalogue } from "@trias/tools";
import type { PlannedStep } from "./planner.js";

export interface HistoryItem {
  tool: string;
  args: unknown;
  outcome: string;
  result: unknown;
  error?: string | null;
}

const Answer = z.object({
  step: z
    .object({
      tool: z.string().min(1),
      args: z.record(z.string(), z.json()),
      rationale: z.string().default(""),
      expected: z.string().default(""),
    })
    .nullable(),
  last: z.boolean().default(true),
});

/** The tool catalogue as the model sees it: names, what they do, their argument schemas. */
export function catalogue(tools: Catalogue | null): string {
  return (tools?.tools() ?? [])
    .filter((t) => !t.name.startsWith("noop.") && !t.name.startsWith("flaky."))
    .map(
      (t) =>
        `- ${t.name}: ${t.description} args: ${JSON.stringify(z.toJSONSchema(t.input, { unrepresentable: "any" }))}`,
    )
    .join("\n");
}

const SYSTEM = `You plan one tool call at a time for a task. Answer only JSON:
{"step": {"tool": "<name>", "args": {...}, "rationale": "<why>", "expected": "<what should be true after>"} | null, "last": <true if this step completes the task>}.
Use only these tools:
`;

/**
 * The LLM planner: one step at a time, from the task and what earlier steps returned. The
 * model sees a projection only: the goal and input with secrets and personal data taken
 * out, the tools, and earlier results; never keys, tiers, policies or reviewers.
 */
export async function planNextWithLlm(
  llm: LlmClient,
  tools: Catalogue | null,
  task: TaskSubmitted,
  history: readonly HistoryItem[],
  replacing: HistoryItem | null = null,
): Promise<{ step: PlannedStep; last: boolean; usage: Usage } | null> {
  const user = JSON.stringify({
    goal: project(task.goal),
    input: project(task.input),
    done_so_far: history.map((h) => project(h)),
    ...(replacing
      ? {
          failed_step_to_replace: project(replacing),
          instruction: "propose a different action for this step; the failed one will be refused",
        }
      : {}),
  });
  const { value, usage } = await llm.json(
    "plan",
    [
      { role: "system", content: SYSTEM + catalogue(tools) },
      { role: "user", content: user },
    ],
    Answer,
  );
  if (!value.step) return null;
  return {
    step: {
      tool: value.step.tool,
      args: value.step.args,
      rationale: value.step.rationale,
      expected: value.step.expected,
    },
    last: value.last,
    usage,
  };
}
