/**
 * Every error a Trias component raises carries a stable `code` (what callers and the
 * rejection record match on), whether retrying could help, and the cause.
 */
export type ErrorCode =
  | "config_invalid"
  | "frame_malformed"
  | "frame_oversized"
  | "schema_invalid"
  | "signature_missing"
  | "signature_invalid"
  | "key_unknown"
  | "key_revoked"
  | "role_mismatch"
  | "subject_mismatch"
  | "message_expired"
  | "message_from_future"
  | "message_replayed"
  | "tier_missing"
  | "tier_invalid"
  /** A signed tier assignment asks for less than the policy the gatekeeper enforces. */
  | "tier_downgrade"
  | "quorum_not_met"
  | "duplicate_reviewer"
  | "self_approval"
  | "digest_mismatch"
  | "policy_digest_mismatch"
  | "scope_denied"
  | "already_executed"
  /** A message that could not be carried within the frame limit (refused before any effect). */
  | "payload_too_large"
  /** Arguments carried by reference whose bytes are missing from the payloads bucket or do not match it. */
  | "payload_unavailable"
  | "run_quarantined"
  | "run_closed"
  | "input_unreadable"
  | "illegal_transition"
  | "policy_invalid"
  | "policy_denied"
  | "budget_exceeded"
  | "rate_limited"
  | "tool_unknown"
  | "tool_failed"
  | "bus_unavailable"
  | "timeout"
  | "unsupported"
  | "internal";

export interface TriasErrorOptions {
  cause?: unknown;
  retryable?: boolean;
}

export class TriasError extends Error {
  override readonly name: string = "TriasError";
  readonly code: ErrorCode;
  readonly retryable: boolean;

  constructor(code: ErrorCode, message: string, options: TriasErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.retryable = options.retryable ?? false;
  }
}

/** Input that can never become valid by retrying: malformed frames, schema violations, bad config. */
export class ValidationError extends TriasError {
  override readonly name = "ValidationError";
  constructor(
    code: ErrorCode,
    message: string,
    options: Omit<TriasErrorOptions, "retryable"> = {},
  ) {
    super(code, message, { ...options, retryable: false });
  }
}

/** A governance check refused the message: signature, role, quorum, digest, scope, replay. */
export class GateError extends TriasError {
  override readonly name = "GateError";
  constructor(
    code: ErrorCode,
    message: string,
    options: Omit<TriasErrorOptions, "retryable"> = {},
  ) {
    super(code, message, { ...options, retryable: false });
  }
}

/** Something outside us failed in a way that may pass on a later attempt (bus, storage, timeouts). */
export class TransientError extends TriasError {
  override readonly name = "TransientError";
  constructor(
    code: ErrorCode,
    message: string,
    options: Omit<TriasErrorOptions, "retryable"> = {},
  ) {
    super(code, message, { ...options, retryable: true });
  }
}

export function isTriasError(e: unknown): e is TriasError {
  return e instanceof TriasError;
}

/** Wrap anything thrown into a TriasError, keeping the original as the cause. */
export function toTriasError(e: unknown): TriasError {
  if (e instanceof TriasError) return e;
  const message = e instanceof Error ? e.message : String(e);
  return new TriasError("internal", message, { cause: e, retryable: false });
}
