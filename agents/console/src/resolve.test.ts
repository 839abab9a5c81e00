import { describe, expect, it } from "vitest";
import { initialRunState, type Phase, type RunState } from "@trias/runstate";
import { humanOrder, type HumanAction } from "./resolve.js";

const D = "a".repeat(64);

/** A run in `phase`, its current step at `attempt`, with `effects` applied effects. */
function run(
  phase: Phase,
  o: { attempt?: number; effects?: number; status?: RunState["status"] } = {},
): RunState {
  const st = initialRunState("r1");
  st.status = o.status ?? (phase === "new" ? "new" : "open");
  st.phase = phase;
  st.current = 1;
  st.steps[1] = { index: 1, attempt: o.attempt ?? 0, digest: D } as RunState["steps"][number];
  st.effects = Array.from({ length: o.effects ?? 0 }, (_, i) => ({
    step: i,
    attempt: 0,
    digest: D,
    seq: i + 1,
    effectId: `r1:${i}:0`,
    tool: "ledger.transfer",
    compensations: [],
    compensated: false,
  }));
  return st;
}

describe("humanOrder", () => {
  const table: [string, RunState, HumanAction, string | RegExp][] = [
    ["cancel of a run waiting for review stops it", run("routed"), "cancel", "quarantine"],
    [
      "cancel of a run waiting for review after effects rolls them back",
      run("routed", { effects: 1 }),
      "cancel",
      "rollback",
    ],
    [
      "cancel of a run whose approved step may be running halts it",
      run("approved", { effects: 1 }),
      "cancel",
      "quarantine",
    ],
    [
      "cancel after a failed step with effects rolls back",
      run("failed", { effects: 1 }),
      "cancel",
      "rollback",
    ],
    ["cancel after a failed step without effects stops it", run("failed"), "cancel", "quarantine"],
    [
      "cancel of a closed run is refused",
      run("closed", { status: "closed" }),
      "cancel",
      /is closed already/,
    ],
    ["cancel of an unknown run is refused", run("new"), "cancel", /no such run/],
    [
      "retry of an escalated run orders the next attempt",
      run("escalated", { attempt: 1 }),
      "retry",
      "retry@2",
    ],
    ["rollback of an escalated run", run("escalated", { effects: 2 }), "rollback", "rollback"],
    ["abandon of an escalated run stops it", run("escalated"), "abandon", "quarantine"],
    ["resolved by hand stops it", run("escalated"), "resolved", "quarantine"],
    [
      "retry of a run that is not escalated is refused",
      run("routed"),
      "retry",
      /is not escalated \(phase routed\)/,
    ],
  ];
  it.each(table)("%s", (_what, st, action, want) => {
    const r = humanOrder(st, action, "olga", "because");
    if (want instanceof RegExp) {
      expect("refused" in r && r.refused).toMatch(want);
      return;
    }
    if ("refused" in r) throw new Error(r.refused);
    const got = r.body.action === "retry" ? `retry@${r.body.nextAttempt}` : r.body.action;
    expect(got).toBe(want);
    // Cancel and abandon close the run cancelled, resolved by hand resolved; the rest go on.
    const ends = { cancel: "cancelled", abandon: "cancelled", resolved: "resolved" } as const;
    expect(r.body.ends).toBe(ends[action as keyof typeof ends]);
    expect(r.body.reason).toContain("olga");
    expect(r.body.reason).toContain("because");
  });
});
