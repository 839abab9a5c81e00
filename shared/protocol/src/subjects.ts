import type { Kind, Role } from "./schemas.js";

/**
 * Subjects are `trias.<role>.<kind>.<run>`. The role token lets the NATS server itself refuse
 * a publish from the wrong account (per-agent permissions), before any signature is checked.
 */
export const SUBJECT_ROOT = "trias";
export const STREAM_NAME = "TRIAS";

export function subjectFor(role: Role, kind: Kind, run: string): string {
  return `${SUBJECT_ROOT}.${role}.${kind}.${run}`;
}

/** Filter for one kind from any sender role (or one role), for every run. */
export function kindFilter(kind: Kind, role: Role | "*" = "*"): string {
  return `${SUBJECT_ROOT}.${role}.${kind}.*`;
}

/** Filter for every message of one run. */
export function runFilter(run: string): string {
  return `${SUBJECT_ROOT}.*.*.${run}`;
}

export interface SubjectParts {
  role: string;
  kind: string;
  run: string;
}

export function parseSubject(subject: string): SubjectParts | null {
  const parts = subject.split(".");
  if (parts.length !== 4 || parts[0] !== SUBJECT_ROOT) return null;
  const [, role, kind, run] = parts as [string, string, string, string];
  return { role, kind, run };
}
