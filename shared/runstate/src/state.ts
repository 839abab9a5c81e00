import type {
  Check,
  JsonObject,
  JsonValue,
  Message,
  PersonEnd,
  Receipt,
  RecoveryAction,
  ReviewDecision,
  ReviewRequirement,
  ReviewStrategy,
  Role,
  RunOutcome,
  Tier,
  VerificationVerdict,
} from "@trias/protocol";
import type { Phase } from "./transitions.js";

/**
 * One stored message of a run, as read from the trace stream. The caller has already checked
 * the frame's signature and decoded `message` from it; `frame` stays the exact stored bytes
 * because receipts commit to those, not to a re-encoding.
 */
export interface TraceEvent {
  /** The stream sequence number: the order of the trace. */
  seq: number;
  subject: string;
  /** The signed frame `[1, kid, sig, payload]`, byte for byte as stored. */
  frame: Uint8Array;
  message: Message;
}

export type RunStatus = "new" | "open" | "closed" | "quarantined";

export interface Violation {
  seq: number;
  /** The message kind, or "unknown" when the event carried no readable message. */
  kind: Message["kind"] | "unknown";
  /** The envelope's step, null for run-level messages. */
  step: number | null;
  sender: string;
  /** `run_closed`: the run was sealed before this event (see afterClose); else illegal_transition. */
  code: "illegal_transition" | "run_closed";
  /** The phase the run was in when the event arrived: what it was illegal against. */
  phase: Phase;
  reason: string;
}

export interface Rejection {
  seq: number;
  code: string;
  reason: string;
  subject: string;
  /** The stream sequence of the refused message, when it reached the stream. */
  rejectedSeq: number | null;
  messageId: string | null;
  sender: string | null;
  by: string;
}

export interface Transition {
  from: Phase;
  to: Phase;
  seq: number;
  /** The step the transition belongs to (for compensations: the step being undone). */
  step: number | null;
}

export interface Approval {
  kid: string;
  role: Role;
  strategy: ReviewStrategy;
  seq: number;
}

export interface Veto {
  kid: string;
  role: Role;
  strategy: ReviewStrategy;
  decision: Exclude<ReviewDecision, "approve">;
  reasons: string[];
  seq: number;
}

export interface LateVerdict {
  kid: string;
  digest: string;
  decision: ReviewDecision;
  seq: number;
}

export interface ExecutionRecord {
  seq: number;
  attempt: number;
  digest: string;
  outcome: "ok" | "error";
  result: JsonValue;
  error: string | null;
  effectId: string;
  /** Approvals the executor said it counted. */
  approvals: string[];
}

export interface VerificationRecord {
  seq: number;
  verdict: VerificationVerdict;
  checks: Check[];
}

/** A superseded attempt of a step (retried, replanned, vetoed or denied), kept for metrics and audit. */
export interface AttemptRecord {
  attempt: number;
  digest: string | null;
  tool: string;
  tier: Tier | null;
  execution: "ok" | "error" | null;
  verdict: VerificationVerdict | null;
  vetoed: boolean;
  denied: string | null;
}

export interface StepState {
  index: number;
  attempt: number;
  /** The last phase the run reached while this was the current step. */
  phase: Phase;
  /** Null until the router has bound the proposal to a digest. */
  digest: string | null;
  tool: string;
  args: JsonObject;
  total: number;
  replanOf: string | null;
  /** sha256 of the proposer's stored frame, which tier assignments must embed verbatim. */
  proposalFrame: string;
  proposer: string;
  router: string | null;
  executor: string | null;
  tier: Tier | null;
  /** The highest tier any attempt of this step was given: later attempts may not go below it. */
  tierFloor: Tier | null;
  requires: ReviewRequirement | null;
  policyDigest: string | null;
  denied: string | null;
  /** sha256 of every tier_assigned frame for the current digest; the last one is in force. */
  assignmentFrames: string[];
  approvals: Approval[];
  /** sha256 of the approving verdict frames, which an execution's evidence must be drawn from. */
  approvalFrames: string[];
  vetoes: Veto[];
  /** Whether the current digest's quorum has been met at some point (a retry re-executes under it). */
  quorumMet: boolean;
  execution: ExecutionRecord | null;
  verification: VerificationRecord | null;
  /** True once every effect of this step has a passed compensation. */
  compensated: boolean;
  late: LateVerdict[];
  history: AttemptRecord[];
  /** Every digest any attempt of this step was bound to, with the identity of its action. */
  digests: BoundDigest[];
}

export interface BoundDigest {
  digest: string;
  attempt: number;
  /** sha256 of the canonical (tool, args): equal for an identical action at any attempt. */
  action: string;
}

export interface CompensationRecord {
  /** Seq of the signed order (recovery_decided compensate), null when the rollback order sufficed. */
  orderSeq: number | null;
  tool: string;
  args: JsonObject;
  effectId: string;
  executedSeq: number | null;
  outcome: "ok" | "error" | null;
  verifiedSeq: number | null;
  verdict: VerificationVerdict | null;
}

/** A tool effect that happened: an ok execution, which a rollback must undo in reverse order. */
export interface EffectRecord {
  step: number;
  attempt: number;
  digest: string;
  seq: number;
  effectId: string;
  tool: string;
  compensations: CompensationRecord[];
  compensated: boolean;
}

export interface PendingCompensation {
  /** Index into `effects`. */
  effect: number;
  step: number;
  of: string;
  tool: string;
  args: JsonObject;
  orderSeq: number | null;
}

export interface RecoveryRecord {
  seq: number;
  action: RecoveryAction;
  reason: string;
  digest: string;
  nextAttempt: number;
  sender: string;
  role: Role;
}

export interface RecoveryState {
  last: RecoveryRecord | null;
  /** Digests that must not execute again, the union of every decision's avoid list. */
  avoid: string[];
  /** Canonical (tool, args) keys of avoided digests known in this run, so a new attempt of an identical action is caught too. */
  avoidActions: string[];
  /** A rollback order lets the executor compensate effect by effect without one order each. */
  rollback: boolean;
  /** Compensations must target effects before this index in `effects` (reverse order); null before the first. */
  cursor: number | null;
  pending: PendingCompensation | null;
}

export interface RunCounts {
  applied: number;
  violations: number;
  rejections: number;
  proposals: number;
  assignments: number;
  verdicts: number;
  approvals: number;
  vetoes: number;
  executions: number;
  executionErrors: number;
  verifications: number;
  passed: number;
  notPassed: number;
  retries: number;
  /** Steps routed again after the executor refused them as routed under another policy. */
  reroutes: number;
  replans: number;
  rollbacks: number;
  compensations: number;
  escalations: number;
  quarantines: number;
}

/** A person's signed order that ends the run (docs/console.md, "Runs that always end"). */
export interface EndedByPerson {
  /** The outcome the run closes with once what the order set in motion is done. */
  outcome: PersonEnd;
  /** Key id of the person who signed it. */
  sender: string;
  reason: string;
  seq: number;
}

export interface ClosedRecord {
  seq: number;
  outcome: RunOutcome;
  reason: string;
  steps: number;
  receipt: Receipt;
}

export interface RunState {
  run: string;
  status: RunStatus;
  phase: Phase;
  outcome: RunOutcome | null;
  program: string | null;
  goal: string | null;
  /** The step in progress (or last finished); null before the first proposal. */
  current: number | null;
  steps: StepState[];
  effects: EffectRecord[];
  recovery: RecoveryState;
  counts: RunCounts;
  /** Stream sequence of the last event that was applied (0 before any). */
  lastSeq: number;
  /** Envelope ids already applied, to refuse a replayed message. */
  messageIds: string[];
  transitions: Transition[];
  violations: Violation[];
  rejections: Rejection[];
  closed: ClosedRecord | null;
  /** The last order by which a person ended the run (cancelled, resolved), null while none. */
  ended: EndedByPerson | null;
  /** The current step held back by its tool's rate limit, until its phase moves on. */
  held: HeldStep | null;
}

/** A step the router holds back for a rate limit (a step_held record): why the run waits. */
export interface HeldStep {
  step: number;
  attempt: number;
  tool: string;
  reason: string;
  /** The earliest the router routes it, ms since the epoch. */
  until: number;
  seq: number;
}
