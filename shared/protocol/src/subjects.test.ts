import { describe, expect, it } from "vitest";
import {
  REVIEW_TOKEN,
  assignmentFilter,
  parseSubject,
  recordsRefusal,
  runOfSubject,
  subjectOf,
  type BodyOf,
  type Role,
} from "./index.js";

function assignment(reviewers: number, denied: string | null = null): BodyOf<"tier_assigned"> {
  return {
    proposal: new Uint8Array(),
    digest: "d".repeat(64),
    policyDigest: "f".repeat(64),
    environment: "dev",
    tier: reviewers === 0 ? "light" : "standard",
    score: 0,
    explanation: [],
    requires: { reviewers, strategies: reviewers === 0 ? [] : ["rules"], human: false },
    escalatedFrom: null,
    denied,
  };
}

/** NATS subject matching, for the filters below: `*` is one token, `>` the rest. */
function matches(filter: string, subject: string): boolean {
  const f = filter.split(".");
  const s = subject.split(".");
  for (let i = 0; i < f.length; i++) {
    if (f[i] === ">") return s.length > i;
    if (f[i] !== "*" && f[i] !== s[i]) return false;
  }
  return f.length === s.length;
}

describe("subjects", () => {
  it("subjects - a subject's run is its last token, whatever its kind token", () => {
    expect(runOfSubject("trias.router.tier_assigned.run-1")).toBe("run-1");
    expect(runOfSubject(`trias.router.${REVIEW_TOKEN}.run-2`)).toBe("run-2");
    expect(runOfSubject(subjectOf("executor", "step_executed", "r3", {} as never))).toBe("r3");
  });

  it("subjects - an assignment asking for review has its own token, which reads back as tier_assigned", () => {
    const reviewed = subjectOf("router", "tier_assigned", "r1", assignment(1));
    const light = subjectOf("router", "tier_assigned", "r1", assignment(0));
    const denied = subjectOf("router", "tier_assigned", "r1", assignment(2, "rule x"));
    expect(reviewed).toBe(`trias.router.${REVIEW_TOKEN}.r1`);
    expect(light).toBe("trias.router.tier_assigned.r1");
    expect(denied).toBe("trias.router.tier_assigned.r1");
    for (const s of [reviewed, light])
      expect(parseSubject(s)).toEqual({ role: "router", kind: "tier_assigned", run: "r1" });
  });

  it("subjects - reviewers' filter takes only assignments asking for review; the executor's takes both", () => {
    const reviewed = subjectOf("router", "tier_assigned", "r1", assignment(1));
    const light = subjectOf("router", "tier_assigned", "r1", assignment(0));
    expect(matches(assignmentFilter("review"), reviewed)).toBe(true);
    expect(matches(assignmentFilter("review"), light)).toBe(false);
    expect(matches(assignmentFilter("all"), reviewed)).toBe(true);
    expect(matches(assignmentFilter("all"), light)).toBe(true);
    // Every other kind keeps its own token.
    expect(subjectOf("verifier", "run_closed", "r1", {} as BodyOf<"run_closed">)).toBe(
      "trias.verifier.run_closed.r1",
    );
  });
});

describe("who records a refusal at admission", () => {
  const ROLES: Role[] = ["proposer", "router", "reviewer", "executor", "verifier"];
  const CASES: [string, Role[]][] = [
    ["trias.console.task_submitted.r1", ["proposer"]],
    ["trias.proposer.step_proposed.r1", ["router"]],
    ["trias.router.tier_assigned.r1", ["executor"]],
    [`trias.router.${REVIEW_TOKEN}.r1`, ["reviewer", "executor"]],
    ["trias.reviewer.verdict.r1", ["executor"]],
    ["trias.human.verdict.r1", ["executor"]],
    ["trias.executor.step_executed.r1", ["verifier"]],
    ["trias.verifier.step_verified.r1", ["proposer"]],
    ["trias.verifier.recovery_decided.r1", ["executor"]],
    ["trias.verifier.run_closed.r1", ["verifier"]],
    ["trias.executor.message_rejected.r1", ["verifier"]],
    ["trias.junk", ["verifier"]],
    ["trias.a.b.c.d", ["verifier"]],
  ];
  it.each(CASES)("subjects - %s is recorded by %j alone", (subject, want) => {
    expect(ROLES.filter((r) => recordsRefusal(r, subject)).sort()).toEqual([...want].sort());
  });
});
