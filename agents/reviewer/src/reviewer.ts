import { subjectFor } from "@trias/protocol";
import { openAssignment, type AgentHost, type Incoming } from "@trias/runtime";
import { reviewByRules } from "./rules.js";
import { metrics, setActiveAttribute } from "@trias/telemetry";

/**
 * One reviewer identity. Each identity has its own durable consumer, so every reviewer sees
 * every step; it judges only steps whose tier asks for its strategy.
 */
export class Reviewer {
  readonly #host: AgentHost;

  constructor(host: AgentHost) {
    this.#host = host;
  }

  async start(): Promise<void> {
    await this.#host.listen(
      `reviewer-${this.#host.name}`,
      subjectFor("router", "tier_assigned", "*"),
      (inc) => this.onAssignment(inc),
    );
  }

  async onAssignment(inc: Incoming): Promise<void> {
    if (inc.message.kind !== "tier_assigned") return;
    const a = openAssignment(this.#host.registry, inc.delivery.data);
    const { requires, denied, digest } = a.message.body;
    if (denied !== null || requires.reviewers === 0 || !requires.strategies.includes("rules"))
      return;
    const v = reviewByRules(a.proposal.message.body);
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
        strategy: "rules",
        reasons: v.reasons,
      },
      trace: a.message.trace,
    });
  }
}
