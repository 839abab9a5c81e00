import { GateError, proposalDigest, type MessageOf, type ReviewRequirement } from "@trias/protocol";
import type { KeyRegistry, RegisteredKey } from "@trias/signing";

export interface OpenedProposal {
  message: MessageOf<"step_proposed">;
  key: RegisteredKey;
}

export interface OpenedAssignment {
  message: MessageOf<"tier_assigned">;
  key: RegisteredKey;
  proposal: OpenedProposal;
  bytes: Uint8Array;
}

export interface OpenedVerdict {
  message: MessageOf<"verdict">;
  key: RegisteredKey;
  bytes: Uint8Array;
}

/**
 * Open a router's tier assignment and the proposal embedded in it: both signatures, both
 * roles, the same run/step/attempt, and the digest recomputed from the proposal's exact
 * tool and arguments under the policy digest the router names.
 */
export function openAssignment(registry: KeyRegistry, bytes: Uint8Array): OpenedAssignment {
  // Opening a frame admission already opened is cheap: the registry keeps it decoded.
  const a = registry.open(bytes);
  if (a.message.kind !== "tier_assigned")
    throw new GateError("tier_invalid", `expected a tier_assigned frame, got ${a.message.kind}`);
  const p = registry.open(a.message.body.proposal);
  if (p.message.kind !== "step_proposed")
    throw new GateError(
      "tier_invalid",
      `tier assignment embeds a ${p.message.kind}, not a step_proposed`,
    );
  const am = a.message;
  const pm = p.message;
  if (am.run !== pm.run || am.step !== pm.step || am.attempt !== pm.attempt) {
    throw new GateError(
      "tier_invalid",
      `tier assignment is for ${am.run}/${am.step}/${am.attempt} but its proposal is ${pm.run}/${pm.step}/${pm.attempt}`,
    );
  }
  if (pm.step === null) throw new GateError("tier_invalid", "a proposal must name its step");
  const digest = proposalDigest({
    tool: pm.body.tool,
    args: pm.body.args,
    run: pm.run,
    step: pm.step,
    attempt: pm.attempt,
    policyDigest: am.body.policyDigest,
  });
  if (digest !== am.body.digest) {
    throw new GateError(
      "digest_mismatch",
      `tier assignment digest ${am.body.digest.slice(0, 12)} does not match its proposal (${digest.slice(0, 12)})`,
    );
  }
  return { message: am, key: a.key, proposal: { message: pm, key: p.key }, bytes };
}

/** Open a verdict and the assignment it embeds; the verdict must judge that assignment's digest. */
export function openVerdict(
  registry: KeyRegistry,
  bytes: Uint8Array,
): { verdict: OpenedVerdict; assignment: OpenedAssignment } {
  const v = registry.open(bytes);
  if (v.message.kind !== "verdict")
    throw new GateError("schema_invalid", `expected a verdict frame, got ${v.message.kind}`);
  const assignment = openAssignment(registry, v.message.body.assignment);
  checkVerdictBinding({ message: v.message, key: v.key, bytes }, assignment);
  return { verdict: { message: v.message, key: v.key, bytes }, assignment };
}

export function checkVerdictBinding(v: OpenedVerdict, a: OpenedAssignment): void {
  const vm = v.message;
  if (vm.body.digest !== a.message.body.digest) {
    throw new GateError(
      "digest_mismatch",
      `verdict by ${v.key.name} is for digest ${vm.body.digest.slice(0, 12)}, not this step's ${a.message.body.digest.slice(0, 12)}`,
    );
  }
  if (vm.run !== a.message.run || vm.step !== a.message.step || vm.attempt !== a.message.attempt) {
    throw new GateError(
      "digest_mismatch",
      `verdict by ${v.key.name} names ${vm.run}/${vm.step}/${vm.attempt}, not the assignment's step`,
    );
  }
  const conflict = separationOfDuties(v.key, {
    proposer: a.proposal.key,
    router: a.key,
    requestedBy: a.proposal.message.body.requestedBy,
  });
  if (conflict !== null) throw new GateError("self_approval", conflict);
  const strategyRole = vm.body.strategy === "human" ? "human" : "reviewer";
  if (v.key.role !== strategyRole) {
    throw new GateError(
      "role_mismatch",
      `a ${v.key.role} key cannot give a ${vm.body.strategy} verdict`,
    );
  }
}

/**
 * Separation of duties: the identity that asked for a step (the task's requestedBy, which
 * the proposer signs into the proposal), proposed it or routed it never judges it. Returns
 * why a judge is refused, or null. The one place this rule lives: every verdict is bound
 * to its step through checkVerdictBinding, which calls it (executor gate, verifier audit).
 */
export function separationOfDuties(
  judge: { kid: string; name: string },
  step: {
    proposer: { kid: string; name: string };
    router: { kid: string; name: string };
    requestedBy: string | undefined;
  },
): string | null {
  if (judge.kid === step.proposer.kid)
    return `key ${judge.name} proposed this step and cannot judge it`;
  if (judge.kid === step.router.kid)
    return `key ${judge.name} routed this step and cannot judge it`;
  if (step.requestedBy !== undefined && judge.name === step.requestedBy)
    return `${judge.name} asked for this run and cannot approve its steps (separation of duties)`;
  return null;
}

export interface HumanGroupCount {
  group: string;
  have: number;
  need: number;
}

export interface QuorumResult {
  met: boolean;
  /** Key ids of approvals counted toward the quorum, in the order given. */
  counted: string[];
  humanApproved: boolean;
  /** Per required group of humans: distinct approving human keys of that group. */
  groups: HumanGroupCount[];
  reason: string;
}

/**
 * Count approvals: distinct keys only, each of a strategy the tier accepts; a human
 * requirement needs an approval by a human key. Duplicates are the caller's to refuse.
 */
export function countQuorum(
  req: ReviewRequirement,
  approvals: readonly OpenedVerdict[],
): QuorumResult {
  const counted: string[] = [];
  const seen = new Set<string>();
  const humans: OpenedVerdict[] = [];
  for (const v of approvals) {
    if (v.message.body.decision !== "approve" || seen.has(v.key.kid)) continue;
    seen.add(v.key.kid);
    if (v.message.body.strategy === "human") {
      humans.push(v);
      if (req.strategies.includes("human")) counted.push(v.key.kid);
      continue;
    }
    if (req.strategies.includes(v.message.body.strategy)) counted.push(v.key.kid);
  }
  const humanApproved = humans.length > 0;
  const groups = (req.humans ?? []).map((q) => ({
    group: q.group,
    have: humans.filter((v) => v.key.groups.includes(q.group)).length,
    need: q.count,
  }));
  const groupsMet = groups.every((g) => g.have >= g.need);
  const met = counted.length >= req.reviewers && (!req.human || humanApproved) && groupsMet;
  const groupText = groups.map((g) => `${g.have}/${g.need} of ${g.group}`).join(", ");
  const reason = met
    ? `quorum met: ${counted.length}/${req.reviewers} reviewer approval(s)${req.human ? ` + human${groups.length ? ` (${groupText})` : ""}` : ""}`
    : `quorum not met: ${counted.length} of ${req.reviewers} approval(s) from distinct reviewer keys${req.human && !humanApproved ? ", human approval missing" : ""}${groupsMet ? "" : `, human approvals ${groupText}`}`;
  return { met, counted, humanApproved, groups, reason };
}
