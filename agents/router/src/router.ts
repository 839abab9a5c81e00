import {
  proposalDigest,
  subjectFor,
  maxTier,
  type Tier,
  type TierAssigned,
  type MessageOf,
} from "@trias/protocol";
import { decideTier, type LoadedPolicy } from "@trias/policy";
import type { AgentHost, Incoming } from "@trias/runtime";
import { triasAttributes, withSpan } from "@trias/telemetry";

/** Pure: the tier assignment body for one signed proposal under one policy. */
export function assign(
  policy: LoadedPolicy,
  proposal: MessageOf<"step_proposed">,
  proposalFrame: Uint8Array,
  floor: Tier = "light",
): TierAssigned {
  const step = proposal.step ?? 0;
  const d = decideTier(
    policy,
    {
      tool: proposal.body.tool,
      args: proposal.body.args,
      run: { id: proposal.run, step, attempt: proposal.attempt },
    },
    floor,
  );
  return {
    proposal: proposalFrame,
    digest: proposalDigest({
      tool: proposal.body.tool,
      args: proposal.body.args,
      run: proposal.run,
      step,
      attempt: proposal.attempt,
      policyDigest: policy.digest,
    }),
    policyDigest: policy.digest,
    environment: policy.doc.environment,
    tier: d.tier,
    score: d.score,
    explanation: d.explanation,
    requires: d.requires,
    escalatedFrom:
      d.tier !== d.scoreTier && floor !== "light" && d.tier === floor ? d.scoreTier : null,
    denied: d.denied,
  };
}

/**
 * Assigns each proposed step a tier. A step that comes back (retry, replan) keeps at least
 * the tier it had: escalation is one-way.
 */
export class Router {
  readonly #host: AgentHost;
  readonly #policy: LoadedPolicy;
  readonly #assigned = new Map<string, Tier>();

  constructor(host: AgentHost, policy: LoadedPolicy) {
    this.#host = host;
    this.#policy = policy;
  }

  async start(): Promise<void> {
    await this.#host.listen("router", subjectFor("proposer", "step_proposed", "*"), (inc) =>
      this.onProposal(inc),
    );
  }

  async onProposal(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "step_proposed" || m.step === null) return;
    const key = `${m.run}/${m.step}`;
    const floor = this.#assigned.get(key) ?? "light";
    const body = withSpan("policy.evaluate", { attributes: triasAttributes({ run: m.run, step: m.step, policyDigest: this.#policy.digest }) }, (span) => {
      const b = assign(this.#policy, m, inc.delivery.data, floor);
      span.setAttributes(triasAttributes({ tier: b.tier }));
      span.setAttribute("trias.risk_score", b.score);
      return b;
    });
    this.#assigned.set(key, maxTier(floor, body.tier));
    if (this.#assigned.size > 50_000)
      this.#assigned.delete(this.#assigned.keys().next().value ?? "");
    await this.#host.emit("tier_assigned", {
      id: `tier-${m.run}-${m.step}-${m.attempt}`,
      run: m.run,
      step: m.step,
      attempt: m.attempt,
      body,
      trace: m.trace,
    });
  }
}
