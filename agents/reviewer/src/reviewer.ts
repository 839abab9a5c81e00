import { assignmentFilter, ValidationError, type BodyOf } from "@trias/protocol";
import type { LlmClient } from "@trias/llm";
import { openAssignment, type AgentHost, type Incoming } from "@trias/runtime";
import { metrics, setActiveAttribute } from "@trias/telemetry";
import { reviewWithLlm } from "./llm-review.js";
import { reviewByRules } from "./rules.js";

export type ReviewerStrategy = "rules" | "llm";

/**
 * One reviewer identity. Each identity has its own durable consumer, so every reviewer sees
 * every assignment that asks for review (the server filters out the rest: REVIEW_TOKEN); it
 * judges those that ask for reviewers of its strategy.
 */
export class Reviewer {
  readonly #host: AgentHost;
  readonly #strategy: ReviewerStrategy;
  readonly #llm: LlmClient | null;

  constructor(host: AgentHost, strategy: ReviewerStrategy = "rules", llm: LlmClient | null = null) {
    if (strategy === "llm" && !llm) {
      throw new ValidationError(
        "config_invalid",
        "an llm reviewer needs a model: set TRIAS_LLM_BASE_URL (and TRIAS_LLM_API_KEY, TRIAS_LLM_MODEL)",
      );
    }
    this.#host = host;
    this.#strategy = strategy;
    this.#llm = llm;
  }

  async start(): Promise<void> {
    await this.#host.listen(
      `reviewer-${this.#host.name}`,
      assignmentFilter("review"),
      (inc) => this.onAssignment(inc),
      { wanted: (env) => mayNeed(env, this.#strategy) },
    );
  }

  async onAssignment(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "tier_assigned") return;
    if (!needs(m.body, this.#strategy)) return;
    const a = openAssignment(this.#host.registry, inc.delivery.data);
    const { digest } = a.message.body;
    const proposal = a.proposal.message.body;
    const v =
      this.#strategy === "llm" && this.#llm
        ? await reviewWithLlm(this.#llm, proposal)
        : reviewByRules(proposal);
    setActiveAttribute("trias.verdict", v.decision);
    setActiveAttribute("trias.tier", a.message.body.tier);
    setActiveAttribute("trias.policy_digest", a.message.body.policyDigest);
    metrics.verdict(this.#host.name, v.decision);
    await this.#host.emit("verdict", {
      id: `verdict-${this.#host.name}-${digest.slice(0, 32)}`,
      run: a.message.run,
      step: a.message.step,
      attempt: a.message.attempt,
      body: {
        digest,
        assignment: inc.delivery.data,
        decision: v.decision,
        strategy: this.#strategy,
        reasons: v.reasons,
      },
      trace: a.message.trace,
    });
  }
}

type Assignment = Pick<BodyOf<"tier_assigned">, "requires" | "denied">;

/** Whether an assignment asks for a reviewer of this strategy. */
function needs(b: Assignment, strategy: ReviewerStrategy): boolean {
  return b.denied === null && b.requires.reviewers > 0 && b.requires.strategies.includes(strategy);
}

/**
 * Most steps need no reviewer of this strategy (every light step): tell from the unverified
 * envelope, before paying for a signature check. Anything unexpected is looked at properly.
 */
function mayNeed(env: unknown, strategy: ReviewerStrategy): boolean {
  const e = env as { kind?: unknown; body?: Partial<Assignment> } | undefined;
  const body = e?.body;
  if (
    e?.kind !== "tier_assigned" ||
    body?.requires === undefined ||
    !Array.isArray(body.requires.strategies) ||
    typeof body.requires.reviewers !== "number"
  )
    return true;
  return needs(body as Assignment, strategy);
}
