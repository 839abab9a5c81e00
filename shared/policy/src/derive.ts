import {
  maxTier,
  tierRank,
  type ReviewRequirement,
  type ReviewStrategy,
  type Tier,
} from "@trias/protocol";
import { decideTier, humanText, type TierDecision } from "./decide.js";
import type { LoadedPolicy } from "./load.js";

/** The step a requirement is derived for: exactly what the signed proposal says. */
export interface StepIdentity {
  tool: string;
  args: Record<string, unknown>;
  run: string;
  step: number;
  attempt: number;
}

/**
 * What the deriving party knows of the run. The router knows it exactly (it rebuilds it from
 * the trace); a gatekeeper that cannot read the trace on its hot path passes lower bounds
 * (`unknownRun()`), so its derivation is never stricter than the router's for the same step
 * (every run fact only ever raises a tier: floors, failures, proposals counted by rules).
 */
export interface RunView {
  /** Proposals of the run so far, this one included. */
  proposals: number;
  /** Verifications of the run that did not pass (compensations aside). */
  failures: number;
  /** The highest tier an earlier assignment gave this step: a tier never goes down. */
  stepFloor: Tier;
}

/** The lower bound of every run fact: what can be said of a step without reading its run. */
export function unknownRun(): RunView {
  return { proposals: 1, failures: 0, stepFloor: "light" };
}

export interface Derivation {
  decision: TierDecision;
  /** The tier the step's own facts give, before the run's floors raised it. */
  unraised: Tier;
  /** The floor the run imposed (the step's earlier tier, the after-failure tier). */
  floor: Tier;
}

/**
 * Pure: what a step requires under a policy (tier, reviewers, strategies, human, denial),
 * given what is known of its run. The router assigns with it; the executor and the verifier
 * re-derive with it, so the three can only disagree on the run facts they see, never on the
 * rule (docs/security.md).
 */
export function deriveStep(policy: LoadedPolicy, s: StepIdentity, view: RunView): Derivation {
  const facts = {
    tool: s.tool,
    args: s.args,
    run: {
      id: s.run,
      step: s.step,
      attempt: s.attempt,
      failures: view.failures,
      proposals: view.proposals,
    },
  };
  let floor: Tier = view.stepFloor;
  if (view.failures > 0) floor = maxTier(floor, policy.doc.escalation.afterFailure);
  const decision = decideTier(policy, facts, floor);
  const unraised = floor === "light" ? decision.tier : decideTier(policy, facts).tier;
  return { decision, unraised, floor };
}

/** The part of a signed tier assignment a gatekeeper compares with its own derivation. */
export interface AssignedRequirement {
  tier: Tier;
  requires: ReviewRequirement;
  denied: string | null;
}

export type AssignmentCheck =
  | {
      ok: true;
      /**
       * The requirement to act on: the stricter of the assignment and the derivation. Its
       * strategies are the policy's for the tier acted on, never ones the signer added.
       */
      requires: ReviewRequirement;
      tier: Tier;
    }
  | { ok: false; code: "tier_downgrade" | "policy_denied"; reason: string };

/**
 * Pure: may a gatekeeper act on this signed assignment, given its own derivation? An
 * assignment may be stricter than the derivation (the router saw a floor the gatekeeper
 * cannot see), never weaker: a lower tier, fewer reviewers, no human where the policy wants
 * one, or no denial where the policy denies, is refused. When the assignment's tier is above
 * the derivation's, the policy is asked again at that tier (about 1.5 us), so the strategies
 * and reviewers acted on are the policy's for that tier, not the signer's word.
 */
export function checkAssignment(
  policy: LoadedPolicy,
  s: StepIdentity,
  view: RunView,
  assigned: AssignedRequirement,
  derived: Derivation = deriveStep(policy, s, view),
): AssignmentCheck {
  const d = derived.decision;
  if (d.denied !== null && assigned.denied === null) {
    return {
      ok: false,
      code: "policy_denied",
      reason: `the ${policy.doc.environment} policy denies ${s.tool} (${d.denied}) but the assignment does not`,
    };
  }
  if (tierRank(assigned.tier) < tierRank(d.tier)) {
    return {
      ok: false,
      code: "tier_downgrade",
      reason: `assigned ${assigned.tier} but the ${policy.doc.environment} policy makes ${s.tool} at least ${d.tier} (${describe(d.requires)}): an assignment below the policy is refused`,
    };
  }
  const atTier =
    assigned.tier === d.tier
      ? d
      : deriveStep(policy, s, { ...view, stepFloor: maxTier(view.stepFloor, assigned.tier) })
          .decision;
  const want = atTier.requires;
  const got = assigned.requires;
  if (got.reviewers < want.reviewers || (want.human && !got.human) || fewerHumans(got, want)) {
    return {
      ok: false,
      code: "tier_downgrade",
      reason: `assigned ${assigned.tier} with ${describe(got)} but the ${policy.doc.environment} policy requires ${describe(want)} for ${s.tool}: an assignment below the policy is refused`,
    };
  }
  return {
    ok: true,
    tier: atTier.tier,
    requires: {
      reviewers: Math.max(got.reviewers, want.reviewers),
      strategies: narrower(got.strategies, want.strategies),
      human: got.human || want.human,
      ...humanGroups(got, want),
    },
  };
}

/** Whether `got` asks fewer humans of some group than `want` does. */
function fewerHumans(got: ReviewRequirement, want: ReviewRequirement): boolean {
  return (want.humans ?? []).some(
    (w) => ((got.humans ?? []).find((g) => g.group === w.group)?.count ?? 0) < w.count,
  );
}

/** The groups of humans both ask for, each at the larger count: an assignment adds, never removes. */
function humanGroups(
  got: ReviewRequirement,
  want: ReviewRequirement,
): Pick<ReviewRequirement, "humans"> {
  const counts = new Map<string, number>();
  for (const q of [...(want.humans ?? []), ...(got.humans ?? [])])
    counts.set(q.group, Math.max(counts.get(q.group) ?? 0, q.count));
  return counts.size === 0
    ? {}
    : { humans: [...counts].map(([group, count]) => ({ group, count })) };
}

/**
 * The strategies both accept, when they share any: an assignment may narrow which reviews
 * count, never widen them past the policy's. Disjoint lists keep the policy's.
 */
function narrower(
  assigned: readonly ReviewStrategy[],
  policy: readonly ReviewStrategy[],
): ReviewStrategy[] {
  const both = assigned.filter((x) => policy.includes(x));
  return both.length > 0 || policy.length === 0 ? both : policy.slice();
}

function describe(r: ReviewRequirement): string {
  return `${r.reviewers} reviewer(s) [${r.strategies.join(", ") || "none"}]${humanText(r)}`;
}
