import { MAX_FRAME_BYTES } from "./frame.js";

/**
 * Room kept in an execution record for what is only known after the effect: the result (or
 * its digest reference when it is large), the error text, the tool name and the envelope.
 */
export const EXECUTION_RESERVE_BYTES = 4 * 1024;

/** What a tier assignment adds to the proposal it embeds (envelope, explanation, digests), at most. */
export const ASSIGNMENT_OVERHEAD_BYTES = 8 * 1024;

/** What a verdict adds to the assignment it embeds (envelope, reasons), at most. */
export const VERDICT_OVERHEAD_BYTES = 4 * 1024;

/**
 * What one counted approval adds to an execution record: the verdict frame's reference
 * (a 64-character digest) and the approving key id (at most 128 characters), msgpack-framed.
 */
export const APPROVAL_REF_BYTES = 256;

/**
 * An upper bound of an execution record's size before its result. The record carries the
 * arguments once (no bigger than the proposal frame that carries them) and names the
 * assignment and each approval by digest (frameRef), never embedding them: its size does
 * not grow with the frames that authorised it (docs/receipts.md, 3). Additions only, so the
 * hot path pays no encoding.
 */
export function executionBound(argsBytes: number, approvals: number): number {
  return argsBytes + approvals * APPROVAL_REF_BYTES;
}

/**
 * Pure: the largest frame a step's review and execution produce, from its proposal's size
 * and the approvals its tier needs: the assignment embeds the proposal, each verdict embeds
 * the assignment, and the execution record carries the arguments once plus its reserve.
 */
export function stepFrameBound(proposalBytes: number, approvals: number): number {
  const assignment = proposalBytes + ASSIGNMENT_OVERHEAD_BYTES;
  const verdict = approvals > 0 ? assignment + VERDICT_OVERHEAD_BYTES : 0;
  const execution = executionBound(proposalBytes, approvals) + EXECUTION_RESERVE_BYTES;
  return Math.max(assignment, verdict, execution);
}

/**
 * Pure: whether every frame of a step can fit, judged when it is routed. A step that cannot
 * is refused before any effect: a frame over the limit would be refused by its receivers
 * after it, and the run could not be verified (DESIGN.md, 12).
 */
export function executionFits(
  proposalBytes: number,
  approvals: number,
  maxFrameBytes: number = MAX_FRAME_BYTES,
): boolean {
  return stepFrameBound(proposalBytes, approvals) <= maxFrameBytes;
}
