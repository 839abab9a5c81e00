import { describe, expect, it } from "vitest";
import { MAX_FRAME_BYTES } from "./frame.js";
import {
  APPROVAL_REF_BYTES,
  ASSIGNMENT_OVERHEAD_BYTES,
  EXECUTION_RESERVE_BYTES,
  VERDICT_OVERHEAD_BYTES,
  executionBound,
  executionFits,
  stepFrameBound,
} from "./sizes.js";

const KB = 1024;

describe("step frame sizes (pure)", () => {
  // [name, proposal bytes, approvals, fits]
  const CASES: [string, number, number, boolean][] = [
    ["a small light step", 2 * KB, 0, true],
    ["a 200 KB argument, light", 205 * KB, 0, true],
    ["a 200 KB argument under two reviewers and a human", 205 * KB, 3, true],
    ["a proposal at the bound of its verdict", MAX_FRAME_BYTES - 12 * KB, 2, true],
    ["one byte past it", MAX_FRAME_BYTES - 12 * KB + 1, 2, false],
    ["a proposal at the bound of its assignment, light", MAX_FRAME_BYTES - 8 * KB, 0, true],
    ["a 300 KB argument", 300 * KB, 0, false],
  ];
  it.each(CASES)("sizes - %s: fits %s", (_name, proposal, approvals, fits) => {
    expect(executionFits(proposal, approvals)).toBe(fits);
  });

  it("sizes - the execution record does not grow with the frames that authorised it", () => {
    // Approvals are named by digest: each adds a constant, whatever the assignment's size.
    expect(executionBound(100 * KB, 3) - executionBound(100 * KB, 0)).toBe(3 * APPROVAL_REF_BYTES);
    expect(executionBound(200 * KB, 2) - executionBound(1 * KB, 2)).toBe(199 * KB);
  });

  it("sizes - the largest frame of a reviewed step is its verdict, of a light step its assignment", () => {
    const p = 50 * KB;
    expect(stepFrameBound(p, 2)).toBe(p + ASSIGNMENT_OVERHEAD_BYTES + VERDICT_OVERHEAD_BYTES);
    expect(stepFrameBound(p, 0)).toBe(
      Math.max(p + ASSIGNMENT_OVERHEAD_BYTES, p + EXECUTION_RESERVE_BYTES),
    );
  });
});
