import { describe, expect, it } from "vitest";
import type { Phase } from "@trias/runstate";
import { closeOnPolicyRollout } from "./rollout.js";

const rejection = (by: string, code: string) => ({
  code,
  reason: "step was routed under policy aaaa but this executor enforces prod policy bbbb",
  subject: "trias.router.tier_assigned.r1",
  seq: 7,
  messageId: "m1",
  sender: "router:1",
  by,
});

describe("closeOnPolicyRollout", () => {
  const mismatch = "policy_digest_mismatch";
  const table: [string, Phase, string, string, string | null][] = [
    [
      "a step waiting for review under the old policy closes",
      "routed",
      "executor",
      mismatch,
      "close",
    ],
    ["a proposed step closes", "proposed", "executor", mismatch, "close"],
    [
      "an approved step is quarantined (no plain close after approval)",
      "approved",
      "executor",
      mismatch,
      "quarantine",
    ],
    ["an executed step is left to verification", "executed", "executor", mismatch, null],
    ["another refusal is not a roll-out", "routed", "executor", "quorum_not_met", null],
    ["a reviewer's refusal is not the gate's", "routed", "reviewer-1", mismatch, null],
  ];
  it.each(table)("%s", (_what, phase, by, code, want) => {
    const d = closeOnPolicyRollout({ phase, current: null, steps: [] }, rejection(by, code));
    if (want === null) {
      expect(d).toBeNull();
      return;
    }
    if (d === null || d.kind === "none") throw new Error("expected a decision");
    expect(d.kind === "close" ? "close" : d.action).toBe(want);
    if (d.kind === "close") expect(d.outcome).toBe("rejected");
    expect(d.reason).toMatch(/^policy changed mid-run: step was routed under policy aaaa/);
    expect(d.reason).toMatch(/submit the task again/);
  });
});
