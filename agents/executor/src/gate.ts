import {
  EXECUTION_RESERVE_BYTES,
  type ErrorCode,
  type ReviewRequirement,
  type Tier,
} from "@trias/protocol";
import { checkAssignment, type LoadedPolicy, type RunView, type StepIdentity } from "@trias/policy";
import { countQuorum, type OpenedVerdict, type QuorumResult } from "@trias/runtime";
import { checkArgs, type Catalogue as ToolCatalogue } from "@trias/tools";

/** The tools this gateway can run, by name. */
/** The tools the gate may find a step's tool in (the injected catalogue, docs/tools.md). */
export type Catalogue = Pick<ToolCatalogue, "get">;

/** What the gate sees of one step: the signed assignment, its proposal and its approvals. */
export interface GateInput {
  policy: LoadedPolicy;
  assignment: {
    policyDigest: string;
    tier: Tier;
    requires: ReviewRequirement;
    denied: string | null;
  };
  /** The signed proposal's tool, arguments and place in the run. */
  step: StepIdentity;
  /** What this executor knows of the run (lower bounds when it has not read the trace). */
  view: RunView;
  /** Approving verdicts from distinct keys, already bound to the step's digest. */
  approvals: readonly OpenedVerdict[];
  /** A reviewer's refusal of the step, if one arrived. */
  veto: string | null;
  /** The step's review window has closed (its assignment came back as a timer). */
  windowClosed: boolean;
  /** How long that window is, for the refusal's reason. */
  windowMs: number;
  /** An upper bound of the execution record's size without its result (see executionBound). */
  executionBytes: number;
  maxFrameBytes: number;
  catalogue: Catalogue;
}

export type GateDecision =
  | { kind: "run"; quorum: QuorumResult; tier: Tier; requires: ReviewRequirement }
  /** Not yet: the review window is open and the quorum is not met. */
  | { kind: "wait"; reason: string }
  /** Nothing to do and nothing to record: the step is denied or vetoed, and the verifier closes the run. */
  | { kind: "skip"; reason: string }
  | { kind: "refuse"; code: ErrorCode; reason: string };

/**
 * Pure: the executor's whole decision for a step, in the order DESIGN.md gives (tier
 * assignment, quorum, policy digest, scope), with what the policy itself requires re-derived
 * here, never taken from the assignment alone (docs/security.md). Every refusal names its
 * reason; nothing here reads a clock, a bucket or the bus.
 */
export function checkStep(g: GateInput): GateDecision {
  const a = g.assignment;
  if (a.policyDigest !== g.policy.digest) {
    return {
      kind: "refuse",
      code: "policy_digest_mismatch",
      reason: `step was routed under policy ${a.policyDigest.slice(0, 12)} but this executor enforces ${g.policy.doc.environment} policy ${g.policy.digest.slice(0, 12)}`,
    };
  }
  if (a.denied !== null) return { kind: "skip", reason: `denied by policy: ${a.denied}` };
  const derived = checkAssignment(g.policy, g.step, g.view, a);
  if (!derived.ok) return { kind: "refuse", code: derived.code, reason: derived.reason };
  if (g.veto !== null) return { kind: "skip", reason: g.veto };
  const quorum = countQuorum(derived.requires, g.approvals);
  if (!quorum.met) {
    if (!g.windowClosed) return { kind: "wait", reason: quorum.reason };
    return {
      kind: "refuse",
      code: "quorum_not_met",
      reason: `${quorum.reason} within ${g.windowMs} ms: step ${g.step.step} of run ${g.step.run} will not execute`,
    };
  }
  const scope = checkScope(g.policy, g.catalogue, g.step.tool, g.step.args);
  if (scope) return { kind: "refuse", code: "scope_denied", reason: scope };
  if (g.executionBytes + EXECUTION_RESERVE_BYTES > g.maxFrameBytes) {
    return {
      kind: "refuse",
      code: "payload_too_large",
      reason: `the record of this execution would take about ${g.executionBytes} bytes (over the ${g.maxFrameBytes}-byte frame limit, less ${EXECUTION_RESERVE_BYTES} for its result): refused before any effect; send smaller arguments`,
    };
  }
  return { kind: "run", quorum, tier: derived.tier, requires: derived.requires };
}

/**
 * Pure: why a tool call is out of this gateway's scope, or null when it is in: the tool in
 * the tool pack and in the policy's catalogue, its arguments valid for its input schema.
 * Compensations go through the same rule.
 */
export function checkScope(
  policy: LoadedPolicy,
  catalogue: Catalogue,
  tool: string,
  args: Record<string, unknown>,
): string | null {
  const def = catalogue.get(tool);
  if (!def) return `tool "${tool}" is not in this gateway's tool pack`;
  if (!policy.doc.tools[tool])
    return `tool "${tool}" is not in the ${policy.doc.environment} policy catalogue`;
  const valid = checkArgs(def, args as never);
  return valid.ok ? null : `arguments for ${tool} are invalid: ${valid.reason}`;
}
