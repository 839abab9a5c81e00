import { describe, expect, it } from "vitest";
import { initialRunState, type Phase, type RunState, type StepState } from "@trias/runstate";
import { onPolicyRollout } from "./rollout.js";

const D = "d".repeat(64);

const rejection = (by: string, code: string, seq = 7) => ({
  code,
  reason: "step was routed under policy aaaa but this executor enforces prod policy bbbb",
  subject: "trias.router.tier_assigned.r1",
  seq,
  messageId: "m1",
  sender: "router:1",
  by,
});

/** A run whose step 0 (attempt `attempt`, proposed at seq 5) is in `phase`, re-routed `reroutes` times. */
function run(phase: Phase, o: { reroutes?: number; attempt?: number } = {}): RunState {
  const st = initialRunState("r1");
  st.status = "open";
  st.phase = phase;
  st.current = 0;
  st.steps[0] = { index: 0, attempt: o.attempt ?? 0, digest: D } as StepState;
  st.transitions = [{ from: "open", to: "proposed", seq: 5, step: 0 }];
  st.counts.reroutes = o.reroutes ?? 0;
  return st;
}

describe("onPolicyRollout", () => {
  const mismatch = "policy_digest_mismatch";
  const table: [string, RunState, ReturnType<typeof rejection>, string | null, RegExp | null][] = [
    [
      "a step waiting for review under the old policy is routed again at its next attempt",
      run("routed"),
      rejection("executor", mismatch),
      "retry@1",
      /re-route 1 of 2\): its reviews and approvals start again/,
    ],
    [
      "an approved step the executor refused is routed again",
      run("approved", { attempt: 1 }),
      rejection("executor", mismatch),
      "retry@2",
      /routed again under the current policy/,
    ],
    [
      "a refusal of an attempt proposed before the current one changes nothing",
      run("routed", { reroutes: 1 }),
      rejection("executor", mismatch, 3),
      "none",
      null,
    ],
    [
      "a re-routed step not yet routed again is let be",
      run("retrying", { reroutes: 1 }),
      rejection("executor", mismatch),
      "none",
      null,
    ],
    [
      "past the limit, a step waiting for review closes the run",
      run("routed", { reroutes: 2 }),
      rejection("executor", mismatch),
      "close:rejected",
      /re-routed 2 time\(s\) already and still refused/,
    ],
    [
      "past the limit, an approved step is quarantined (no plain close after approval)",
      run("approved", { reroutes: 2 }),
      rejection("executor", mismatch),
      "quarantine",
      /are the router and the executor on one policy/,
    ],
    [
      "a step refused before it was ever re-routed, in a phase that cannot re-route, closes",
      run("proposed"),
      rejection("executor", mismatch),
      "close:rejected",
      /submit the task again to route it under the current policy/,
    ],
    [
      "an executed step is left to verification",
      run("executed"),
      rejection("executor", mismatch),
      null,
      null,
    ],
    [
      "another refusal is not a roll-out",
      run("routed"),
      rejection("executor", "quorum_not_met"),
      null,
      null,
    ],
    [
      "a reviewer's refusal is not the gate's",
      run("routed"),
      rejection("reviewer-1", mismatch),
      null,
      null,
    ],
  ];
  it.each(table)("%s", (_what, st, r, want, reason) => {
    const d = onPolicyRollout(st, r);
    if (want === null) {
      expect(d).toBeNull();
      return;
    }
    if (d === null) throw new Error("expected a decision");
    const got =
      d.kind === "none"
        ? "none"
        : d.kind === "close"
          ? `close:${d.outcome}`
          : d.action === "retry"
            ? `retry@${d.nextAttempt}`
            : d.action;
    expect(got).toBe(want);
    if (reason && d.kind !== "none") {
      expect(d.reason).toMatch(/^policy changed mid-run: step was routed under policy aaaa/);
      expect(d.reason).toMatch(reason);
    }
  });
});
