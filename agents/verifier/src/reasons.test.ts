import { describe, expect, it } from "vitest";
import type { TierParams } from "@trias/policy";
import type { StepState } from "@trias/runstate";
import { decideRecovery } from "./recovery.js";
import {
  TOOL_SUCCEEDED,
  policyDenial,
  reviewStop,
  stepFailure,
  type StepFailure,
} from "./reasons.js";
import { POSTCONDITIONS_UNREADABLE } from "./verifier.js";

const ok = (name: string) => ({ name, ok: true, detail: "ok" });
const refused = {
  name: TOOL_SUCCEEDED,
  ok: false,
  detail: "insufficient funds: dave has 0, needs 20",
};
const transfer = { index: 1, tool: "ledger.transfer", attempt: 0 } as const;

describe("reasons", () => {
  const steps: [string, StepFailure, string][] = [
    [
      "a tool that refused names the tool, the step and its own words",
      { ...transfer, verdict: "failed", outcome: "error", checks: [ok("signature"), refused] },
      "ledger.transfer refused step 1 (attempt 1): insufficient funds: dave has 0, needs 20",
    ],
    [
      "a failed postcondition says what should have held and what was found",
      {
        index: 0,
        tool: "flaky.write",
        attempt: 1,
        verdict: "failed",
        outcome: "ok",
        checks: [
          ok("signature"),
          { name: "downstream confirmed", ok: false, detail: "not confirmed at attempt 1" },
        ],
      },
      'the verifier found step 0 (flaky.write) failed at attempt 2: "downstream confirmed" did not hold (not confirmed at attempt 1)',
    ],
    [
      "unreadable postconditions are uncertain, with the cause",
      {
        index: 2,
        tool: "flaky.write",
        attempt: 0,
        verdict: "uncertain",
        outcome: "ok",
        checks: [{ name: POSTCONDITIONS_UNREADABLE, ok: false, detail: "downstream unreachable" }],
      },
      'the verifier found step 2 (flaky.write) uncertain at attempt 1: "postconditions readable" did not hold (downstream unreachable)',
    ],
    [
      "several failed checks are all named",
      {
        ...transfer,
        verdict: "failed",
        outcome: "ok",
        checks: [
          { name: "balance moved", ok: false, detail: "carol unchanged" },
          { name: "recorded", ok: false, detail: "no record" },
        ],
      },
      'the verifier found step 1 (ledger.transfer) failed at attempt 1: "balance moved" did not hold (carol unchanged); "recorded" did not hold (no record)',
    ],
  ];
  it.each(steps)("reasons - %s", (_what, s, want) => {
    expect(stepFailure(s)).toBe(want);
  });

  it("reasons - no reason reads as its own contradiction", () => {
    for (const [, s] of steps)
      expect(stepFailure(s)).not.toMatch(/succeeded: |refused: tool succeeded/);
  });

  const others: [string, string, string][] = [
    [
      "a reviewer's rejection",
      reviewStop("reviewer-2", "reject", 0, ["amount above the limit", "no memo"]),
      "reviewer-2 rejected step 0: amount above the limit; no memo",
    ],
    [
      "a reviewer without reasons",
      reviewStop("human-operator", "escalate", 3, []),
      "human-operator escalated step 3: no reason given",
    ],
    [
      "a policy denial",
      policyDenial(0, "prod", "transfers above 10,000 must go through the treasury desk"),
      "the prod policy denied step 0: transfers above 10,000 must go through the treasury desk",
    ],
  ];
  it.each(others)("reasons - %s", (_what, got, want) => {
    expect(got).toBe(want);
  });

  // What recovery adds after the clause: the next move, never a second account of the failure.
  const params = {
    reviewers: 0,
    strategies: [],
    maxAttempts: 2,
    backoffMs: 100,
  } as unknown as TierParams;
  const step = (attempt: number) => ({ index: 1, attempt, digest: "d".repeat(64) }) as StepState;
  const decisions: [string, () => string, string][] = [
    [
      "a refusal with nothing to undo closes the run",
      () =>
        reasonOf(
          decideRecovery(
            step(0),
            {
              verdict: "failed",
              outcome: "error",
              reason: stepFailure({
                ...transfer,
                verdict: "failed",
                outcome: "error",
                checks: [refused],
              }),
            },
            params,
            [],
            0,
          ),
        ),
      "ledger.transfer refused step 1 (attempt 1): insufficient funds: dave has 0, needs 20; nothing to undo",
    ],
    [
      "a refusal with a planner that can replan",
      () =>
        reasonOf(
          decideRecovery(
            step(0),
            {
              verdict: "failed",
              outcome: "error",
              reason: "ledger.transfer refused step 1 (attempt 1): closed",
            },
            params,
            [],
            0,
            true,
          ),
        ),
      "ledger.transfer refused step 1 (attempt 1): closed; replan 2 of 2, avoiding this action",
    ],
    [
      "an unconfirmed outcome is retried",
      () =>
        reasonOf(
          decideRecovery(
            step(0),
            {
              verdict: "failed",
              outcome: "ok",
              reason: 'the verifier found step 1 (x) failed at attempt 1: "y" did not hold (z)',
            },
            params,
            [],
            0,
          ),
        ),
      'the verifier found step 1 (x) failed at attempt 1: "y" did not hold (z); retry 2 of 2 after 100 ms',
    ],
  ];
  it.each(decisions)("reasons - recovery: %s", (_what, got, want) => {
    expect(got()).toBe(want);
  });
});

function reasonOf(d: ReturnType<typeof decideRecovery>): string {
  return d.kind === "none" ? "" : d.reason;
}
