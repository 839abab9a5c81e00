import { z } from "zod";

/**
 * The wire vocabulary of Trias. Every type in the system that crosses a process boundary
 * is inferred from a schema in this file; JSON Schema for each is generated from here too.
 */

export const PROTOCOL_VERSION = 1 as const;

export const RunId = z
  .string()
  .regex(/^[A-Za-z0-9_-]{1,64}$/, "a run id is 1 to 64 characters of A-Z, a-z, 0-9, '_' or '-'");
export type RunId = z.infer<typeof RunId>;

export const Role = z.enum([
  "proposer",
  "router",
  "reviewer",
  "executor",
  "verifier",
  "console",
  "human",
]);
export type Role = z.infer<typeof Role>;

export const Tier = z.enum(["light", "standard", "full"]);
export type Tier = z.infer<typeof Tier>;

/** Tiers in increasing strictness: the index is the rank, and ranks only ever go up. */
export const TIER_ORDER: readonly Tier[] = ["light", "standard", "full"];
export function tierRank(t: Tier): number {
  return TIER_ORDER.indexOf(t);
}
export function maxTier(a: Tier, b: Tier): Tier {
  return tierRank(a) >= tierRank(b) ? a : b;
}

export const Digest = z.string().regex(/^[0-9a-f]{64}$/, "a digest is 64 lowercase hex characters");
export type Digest = z.infer<typeof Digest>;

export const KeyId = z.string().min(1).max(128);

/** Raw bytes (msgpack bin). Used for embedded signed frames, which are evidence and stay opaque. */
export const Bytes = z.custom<Uint8Array>((v) => v instanceof Uint8Array, {
  message: "expected bytes (msgpack bin)",
});

export const JsonValue = z.json();
export type JsonValue = z.infer<typeof JsonValue>;
export const JsonObject = z.record(z.string(), JsonValue);
export type JsonObject = z.infer<typeof JsonObject>;

export const ReviewDecision = z.enum(["approve", "revise", "reject", "ask_user", "escalate"]);
export type ReviewDecision = z.infer<typeof ReviewDecision>;

export const ReviewStrategy = z.enum(["rules", "llm", "human"]);
export type ReviewStrategy = z.infer<typeof ReviewStrategy>;

export const VerificationVerdict = z.enum(["passed", "incomplete", "failed", "uncertain"]);
export type VerificationVerdict = z.infer<typeof VerificationVerdict>;

export const RecoveryAction = z.enum([
  "retry",
  "replan",
  "rollback",
  "compensate",
  "escalate",
  "quarantine",
]);
export type RecoveryAction = z.infer<typeof RecoveryAction>;

/**
 * A run stopped by a person's signed order (docs/console.md, "Runs that always end"):
 * `cancelled` (stopped, what ran compensated where the run's table allows a rollback) or
 * `resolved` (an escalation settled by hand outside Trias).
 */
export const PersonEnd = z.enum(["cancelled", "resolved"]);
export type PersonEnd = z.infer<typeof PersonEnd>;

export const RunOutcome = z.enum([
  "completed",
  "failed",
  "rejected",
  "rolled_back",
  "escalated",
  "quarantined",
  ...PersonEnd.options,
]);
export type RunOutcome = z.infer<typeof RunOutcome>;

// ---------------------------------------------------------------------------------------
// Bodies, one per message kind.

export const TaskSubmitted = z.object({
  goal: z.string().min(1).max(4000),
  /** Name of a known program for the deterministic planner, or "freeform" for an LLM. */
  program: z.string().min(1).max(128),
  input: JsonObject,
  requestedBy: z.string().min(1).max(256),
});
export type TaskSubmitted = z.infer<typeof TaskSubmitted>;

export const StepProposed = z.object({
  tool: z.string().min(1).max(128),
  args: JsonObject,
  rationale: z.string().max(4000),
  expected: z.string().max(4000),
  /** Position in the current plan; `total` may change after a replan. */
  index: z.number().int().nonnegative(),
  total: z.number().int().positive(),
  /** The digest of the proposal this one replaces after a replan, else null. */
  replanOf: Digest.nullable(),
  /**
   * Who asked for the run (the task's requestedBy), carried and signed by the proposer so
   * the gate can tell that this identity may not approve the step (separation of duties).
   */
  requestedBy: z.string().min(1).max(256).optional(),
  /** What the model spent to produce this proposal (null for the deterministic planner): budgets count it. */
  usage: z
    .object({
      inputTokens: z.number().int().nonnegative(),
      outputTokens: z.number().int().nonnegative(),
      costUsd: z.number().nonnegative(),
    })
    .nullable()
    .default(null),
});
export type StepProposed = z.infer<typeof StepProposed>;

/** A group name for human identities ("treasury"): what a policy asks approvals from. */
export const GroupName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "a group is lowercase letters, digits, '_' and '-'");

/** `count` distinct human keys of `group` must approve. */
export const HumanQuorum = z.object({ group: GroupName, count: z.number().int().min(1).max(16) });
export type HumanQuorum = z.infer<typeof HumanQuorum>;

export const ReviewRequirement = z.object({
  reviewers: z.number().int().nonnegative(),
  strategies: z.array(ReviewStrategy),
  /** At least one human approval (any human key when `humans` is absent). */
  human: z.boolean(),
  /** Approvals from named groups of humans, each met by distinct human keys of that group. */
  humans: z.array(HumanQuorum).optional(),
});
export type ReviewRequirement = z.infer<typeof ReviewRequirement>;

export const TierAssigned = z.object({
  /** The proposer's signed step_proposed frame, verbatim: the evidence this assignment judges. */
  proposal: Bytes,
  digest: Digest,
  policyDigest: Digest,
  environment: z.string(),
  tier: Tier,
  score: z.number(),
  explanation: z.array(z.string()),
  requires: ReviewRequirement,
  /** A later signal may raise a step's tier; this names the tier it was raised from. */
  escalatedFrom: Tier.nullable(),
  /** Set when the policy refuses the step outright: nothing may execute it. */
  denied: z.string().nullable(),
});
export type TierAssigned = z.infer<typeof TierAssigned>;

export const Verdict = z.object({
  digest: Digest,
  /** The router's signed tier_assigned frame, verbatim, so one verdict carries its whole chain. */
  assignment: Bytes,
  decision: ReviewDecision,
  strategy: ReviewStrategy,
  reasons: z.array(z.string()),
});
export type Verdict = z.infer<typeof Verdict>;

export const StepExecuted = z.object({
  digest: Digest,
  tool: z.string(),
  args: JsonObject,
  tier: Tier,
  outcome: z.enum(["ok", "error"]),
  result: JsonValue,
  error: z.string().nullable(),
  /** Key ids of the approvals the gate counted. */
  approvals: z.array(KeyId),
  /** Stable id of the effect (run:step:attempt), the tool's idempotency key. */
  effectId: z.string(),
  /**
   * The signed frames the gate accepted, by the SHA-256 of their stored bytes (frameRef):
   * the tier assignment (for a compensation, the signed order) and the approvals counted.
   * Each is stored in the run's trace, so the verifier audits the decision on its own, and
   * the record never repeats the arguments those frames already carry (docs/receipts.md, 3).
   */
  evidence: z.object({ assignment: Digest, approvals: z.array(Digest) }),
  /** Set when this execution was a compensation ordered by recovery. */
  compensationOf: Digest.nullable(),
  index: z.number().int().nonnegative(),
  total: z.number().int().positive(),
});
export type StepExecuted = z.infer<typeof StepExecuted>;

export const Check = z.object({ name: z.string(), ok: z.boolean(), detail: z.string() });
export type Check = z.infer<typeof Check>;

export const StepVerified = z.object({
  digest: Digest,
  tool: z.string(),
  verdict: VerificationVerdict,
  checks: z.array(Check),
  compensationOf: Digest.nullable(),
  index: z.number().int().nonnegative(),
  total: z.number().int().positive(),
});
export type StepVerified = z.infer<typeof StepVerified>;

export const Compensation = z.object({
  /** The step being undone and the digest its execution carried. */
  step: z.number().int().nonnegative(),
  of: Digest,
  tool: z.string(),
  args: JsonObject,
});
export type Compensation = z.infer<typeof Compensation>;

export const RecoveryDecided = z.object({
  digest: Digest,
  action: RecoveryAction,
  reason: z.string(),
  /** For compensate: the one compensation this order authorises. */
  compensation: Compensation.nullable(),
  /** Digests of actions that failed and must not be retried unchanged. */
  avoid: z.array(Digest),
  nextAttempt: z.number().int().nonnegative(),
  /** Backoff as data: the next attempt is not proposed before this time (ms since epoch). */
  notBefore: z.number().int().nonnegative().nullable(),
  /**
   * For compensate: the executor's signed frame of the effect being undone, by frameRef (it
   * is in the run's trace): naming it costs the order 64 characters, whatever its arguments.
   */
  evidence: Digest.nullable(),
  /**
   * Set only on a person's quarantine or rollback that ends the run (a cancel, an abandon,
   * a resolution by hand): the outcome the run then closes with, instead of `quarantined`
   * or `rolled_back`. The run-state fold refuses it from any other role.
   */
  ends: PersonEnd.optional(),
});
export type RecoveryDecided = z.infer<typeof RecoveryDecided>;

export const Receipt = z.object({
  alg: z.literal("sha256-chain/v1"),
  head: Digest,
  events: z.number().int().nonnegative(),
  firstSeq: z.number().int().nonnegative(),
  lastSeq: z.number().int().nonnegative(),
  /** Every link h_1..h_n of the chain, so an audit can name the first event that changed. */
  links: z.array(Digest).optional(),
  /**
   * The keys the run was checked under: the key-set digest at `at` (ms since the epoch; see
   * docs/receipts.md). Absent in receipts issued before receipts named their keys.
   */
  keySet: z.object({ digest: Digest, at: z.number().int().nonnegative() }).optional(),
  /** The policies the run was routed and verified under, and the verifier's environment. */
  policy: z.object({ digests: z.array(Digest), environment: z.string() }).optional(),
});
export type Receipt = z.infer<typeof Receipt>;

export const Topology = z.object({
  entropyBits: z.number(),
  rollbackDensity: z.number(),
  pathVariance: z.number(),
  sequenceVariance: z.number(),
  alarm: z.boolean(),
  reasons: z.array(z.string()),
});
export type Topology = z.infer<typeof Topology>;

export const RunClosed = z.object({
  outcome: RunOutcome,
  reason: z.string(),
  steps: z.number().int().nonnegative(),
  receipt: Receipt,
  /** Execution topology of the run against its program's baseline. */
  topology: Topology.nullable(),
});
export type RunClosed = z.infer<typeof RunClosed>;

export const MessageRejected = z.object({
  code: z.string(),
  reason: z.string(),
  subject: z.string(),
  seq: z.number().int().nonnegative().nullable(),
  messageId: z.string().nullable(),
  sender: z.string().nullable(),
  /** Name of the agent that refused it. */
  by: z.string(),
});
export type MessageRejected = z.infer<typeof MessageRejected>;

/**
 * A data subject's key was destroyed (crypto-shredding, docs/privacy.md): every sealed
 * value of that subject in the trace is from now on unreadable. A record in its own run,
 * never a transition of a task's run.
 */
export const SubjectErased = z.object({
  subject: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  reason: z.string().min(1).max(1000),
  requestedBy: z.string().min(1).max(256),
  /** False when the key store held no key for the subject (nothing was sealed, or already erased). */
  keyDestroyed: z.boolean(),
});
export type SubjectErased = z.infer<typeof SubjectErased>;

/**
 * A step the router holds back for its tool's rate limit (docs/rate-limits.md): why the run
 * waits, in the trace. Published once per held step and attempt; the step is routed when the
 * window lets it, or refused after the policy's longest delay.
 */
export const StepHeld = z.object({
  tool: z.string().min(1).max(256),
  reason: z.string().max(1024),
  /** The earliest the router will route it, ms since the epoch. */
  until: z.number().int().nonnegative(),
});
export type StepHeld = z.infer<typeof StepHeld>;

// ---------------------------------------------------------------------------------------
// The envelope.

export const TraceContext = z.object({
  traceparent: z.string().max(128),
  tracestate: z.string().max(512).optional(),
});
export type TraceContext = z.infer<typeof TraceContext>;

const header = {
  v: z.literal(PROTOCOL_VERSION),
  /** Unique per message; the JetStream Nats-Msg-Id, so the server drops duplicates. */
  id: z.string().min(8).max(128),
  run: RunId,
  /** Step index within the run, null for run-level messages. */
  step: z.number().int().nonnegative().nullable(),
  attempt: z.number().int().nonnegative(),
  /** Key id of the signer; must be registered for `role`. */
  sender: KeyId,
  role: Role,
  issuedAt: z.number().int().nonnegative(),
  expiresAt: z.number().int().nonnegative(),
  trace: TraceContext.nullable(),
};

function kindOf<K extends string, B extends z.ZodType>(kind: K, body: B) {
  return z.object({ ...header, kind: z.literal(kind), body });
}

export const Message = z.discriminatedUnion("kind", [
  kindOf("task_submitted", TaskSubmitted),
  kindOf("step_proposed", StepProposed),
  kindOf("tier_assigned", TierAssigned),
  kindOf("verdict", Verdict),
  kindOf("step_executed", StepExecuted),
  kindOf("step_verified", StepVerified),
  kindOf("recovery_decided", RecoveryDecided),
  kindOf("run_closed", RunClosed),
  kindOf("message_rejected", MessageRejected),
  kindOf("subject_erased", SubjectErased),
  kindOf("step_held", StepHeld),
]);
export type Message = z.infer<typeof Message>;
export type Kind = Message["kind"];
export type MessageOf<K extends Kind> = Extract<Message, { kind: K }>;
export type BodyOf<K extends Kind> = MessageOf<K>["body"];

export const KINDS = Message.options.map((o) => o.shape.kind.value) as readonly Kind[];

/** Which roles may send each kind. The subject, the key registry and this table must agree. */
export const SENDERS: Readonly<Record<Kind, readonly Role[]>> = {
  task_submitted: ["console"],
  step_proposed: ["proposer"],
  tier_assigned: ["router"],
  verdict: ["reviewer", "human"],
  step_executed: ["executor"],
  step_verified: ["verifier"],
  recovery_decided: ["verifier", "human"],
  run_closed: ["verifier"],
  message_rejected: ["proposer", "router", "reviewer", "executor", "verifier", "console"],
  subject_erased: ["console"],
  step_held: ["router"],
};
