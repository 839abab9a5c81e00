import type { BodyOf, Kind, Role } from "./schemas.js";

/**
 * Subjects are `trias.<role>.<kind>.<run>`. The role token lets the NATS server itself refuse
 * a publish from the wrong account (per-agent permissions), before any signature is checked.
 */
export const SUBJECT_ROOT = "trias";
export const STREAM_NAME = "TRIAS";

/**
 * The kind token of an assignment that asks for reviewers. Reviewers consume only this
 * token, so the server keeps every other assignment (every light step) from waking them;
 * a consumer filter can only select by subject. It stands for the kind `tier_assigned`
 * (see parseSubject). A frame on the other of the two tokens costs liveness, not safety:
 * reviewers miss a step that then waits out its review window, or see one they skip.
 */
export const REVIEW_TOKEN = "tier_assigned_review";

export function subjectFor(role: Role, kind: Kind, run: string): string {
  return `${SUBJECT_ROOT}.${role}.${kind}.${run}`;
}

/** Whether an assignment asks for at least one reviewer (a denied step asks for none). */
export function asksForReview(b: BodyOf<"tier_assigned">): boolean {
  return b.denied === null && b.requires.reviewers > 0;
}

/** Whether an assignment waits for a person's decision (a denied step waits for no one). */
export function asksForHuman(b: BodyOf<"tier_assigned">): boolean {
  return b.denied === null && b.requires.human;
}

/** The subject a message is published on: its kind's, or REVIEW_TOKEN's for an assignment asking for review. */
export function subjectOf<K extends Kind>(
  role: Role,
  kind: K,
  run: string,
  body: BodyOf<K>,
): string {
  if (kind === "tier_assigned" && asksForReview(body as BodyOf<"tier_assigned">))
    return `${SUBJECT_ROOT}.${role}.${REVIEW_TOKEN}.${run}`;
  return subjectFor(role, kind, run);
}

/** Filter for a role's assignments: every one, or (reviewers) only those asking for review. */
export function assignmentFilter(which: "all" | "review"): string {
  return `${SUBJECT_ROOT}.router.${which === "all" ? "*" : REVIEW_TOKEN}.*`;
}

/**
 * The run a subject addresses: its last token. What the bus serialises handling by and what
 * replicas partition by (docs/scaling.md, section 2), read without decoding the message.
 */
export function runOfSubject(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}

/** Filter for every message of one run. */
export function runFilter(run: string): string {
  return `${SUBJECT_ROOT}.*.*.${run}`;
}

export interface SubjectParts {
  role: string;
  /** The kind the subject carries: REVIEW_TOKEN reads as `tier_assigned`. */
  kind: string;
  run: string;
}

export function parseSubject(subject: string): SubjectParts | null {
  const parts = subject.split(".");
  if (parts.length !== 4 || parts[0] !== SUBJECT_ROOT) return null;
  const [, role, token, run] = parts as [string, string, string, string];
  return { role, kind: token === REVIEW_TOKEN ? "tier_assigned" : token, run };
}

/**
 * Who records the refusal of a message that fails admission (a bad frame, signature, key,
 * freshness): the role the subject is addressed to, not every agent whose consumer sees it,
 * so a junk message yields one record, not one per agent (the verifier follows every subject
 * and records only what no one else consumes). A step that asks for review is addressed to
 * the executor and to the reviewers.
 */
export function recordsRefusal(role: Role, subject: string): boolean {
  const parts = subject.split(".");
  const token = parts.length === 4 && parts[0] === SUBJECT_ROOT ? parts[2] : undefined;
  switch (token) {
    case "task_submitted":
      return role === "proposer";
    case "step_proposed":
      return role === "router";
    case REVIEW_TOKEN:
      return role === "executor" || role === "reviewer";
    case "tier_assigned":
    case "verdict":
    case "recovery_decided":
      return role === "executor";
    case "step_verified":
      return role === "proposer";
    default:
      return role === "verifier";
  }
}
