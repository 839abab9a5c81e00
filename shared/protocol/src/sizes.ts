import { MAX_FRAME_BYTES } from "./frame.js";

/**
 * Room kept in an execution record for what is only known after the effect: the result (or
 * its digest reference when it is large), the error text, the counted key ids and the envelope.
 */
export const EXECUTION_RESERVE_BYTES = 4 * 1024;

/** What a tier assignment adds to the proposal it embeds (envelope, explanation, digests), at most. */
export const ASSIGNMENT_OVERHEAD_BYTES = 8 * 1024;

/** What a verdict adds to the assignment it embeds (envelope, reasons), at most. */
export const VERDICT_OVERHEAD_BYTES = 4 * 1024;

/**
 * An upper bound of an execution record's size before its result, from the sizes of what it
 * embeds: the assignment (which embeds the proposal), each approval (which embeds the
 * assignment again) and the arguments once more (no bigger than the proposal frame).
 * Additions only, so the hot path pays no encoding.
 */
export function executionBound(
  assignmentBytes: number,
  proposalBytes: number,
  approvalBytes: readonly number[],
): number {
  let n = assignmentBytes + proposalBytes;
  for (const b of approvalBytes) n += b;
  return n;
}

/**
 * Pure: whether a step's execution record can fit a frame, judged when it is routed, from
 * its proposal's size and the approvals its tier needs. A step that cannot is refused before
 * any effect: its record would be refused by the verifier after it (DESIGN.md, 12).
 */
export function executionFits(
  proposalBytes: number,
  approvals: number,
  maxFrameBytes: number = MAX_FRAME_BYTES,
): boolean {
  const assignment = proposalBytes + ASSIGNMENT_OVERHEAD_BYTES;
  const verdict = assignment + VERDICT_OVERHEAD_BYTES;
  const bound = executionBound(assignment, proposalBytes, Array<number>(approvals).fill(verdict));
  return bound + EXECUTION_RESERVE_BYTES <= maxFrameBytes;
}
