import { describe, expect, it } from "vitest";
import type { ReviewRequirement, ReviewStrategy } from "@trias/protocol";
import { countQuorum, separationOfDuties, type OpenedVerdict } from "./evidence.js";

const proposer = { kid: "proposer:1", name: "proposer" };
const router = { kid: "router:1", name: "router" };

describe("separationOfDuties", () => {
  const table: [string, { kid: string; name: string }, string | undefined, RegExp | null][] = [
    [
      "a reviewer of someone else's run",
      { kid: "reviewer-1:1", name: "reviewer-1" },
      "alice",
      null,
    ],
    ["a human who did not ask", { kid: "bob:1", name: "bob" }, "alice", null],
    [
      "the human who asked for the run",
      { kid: "alice:1", name: "alice" },
      "alice",
      /alice asked for this run/,
    ],
    ["the proposer's key", proposer, "alice", /proposed this step/],
    ["the router's key", router, undefined, /routed this step/],
    [
      "anyone, when nobody is named as requester",
      { kid: "alice:1", name: "alice" },
      undefined,
      null,
    ],
  ];
  it.each(table)("%s", (_what, judge, requestedBy, refused) => {
    const r = separationOfDuties(judge, { proposer, router, requestedBy });
    if (refused === null) expect(r).toBeNull();
    else expect(r).toMatch(refused);
  });
});

/** A verdict as countQuorum reads it: decision, strategy, and the signer's key. */
function v(kid: string, strategy: ReviewStrategy, groups: string[] = [], decision = "approve") {
  return {
    message: { body: { decision, strategy } },
    key: { kid, name: kid, role: strategy === "human" ? "human" : "reviewer", groups },
  } as unknown as OpenedVerdict;
}

describe("countQuorum with groups of humans", () => {
  const req: ReviewRequirement = {
    reviewers: 1,
    strategies: ["rules"],
    human: true,
    humans: [{ group: "treasury", count: 2 }],
  };
  const table: [string, OpenedVerdict[], boolean, string][] = [
    ["reviewer only", [v("r1", "rules")], false, "0/2 of treasury"],
    [
      "one treasury human",
      [v("r1", "rules"), v("alice", "human", ["treasury"])],
      false,
      "1/2 of treasury",
    ],
    [
      "a human of another group does not count",
      [v("r1", "rules"), v("alice", "human", ["treasury"]), v("olga", "human", ["ops"])],
      false,
      "1/2 of treasury",
    ],
    [
      "the same human twice counts once",
      [v("r1", "rules"), v("alice", "human", ["treasury"]), v("alice", "human", ["treasury"])],
      false,
      "1/2 of treasury",
    ],
    [
      "a rejection is no approval",
      [
        v("r1", "rules"),
        v("alice", "human", ["treasury"]),
        v("bob", "human", ["treasury"], "reject"),
      ],
      false,
      "1/2 of treasury",
    ],
    [
      "two treasury humans and the reviewer",
      [v("r1", "rules"), v("alice", "human", ["treasury"]), v("bob", "human", ["treasury", "ops"])],
      true,
      "2/2 of treasury",
    ],
    [
      "two treasury humans, no reviewer",
      [v("alice", "human", ["treasury"]), v("bob", "human", ["treasury"])],
      false,
      "0 of 1 approval",
    ],
  ];
  it.each(table)("%s", (_what, approvals, met, text) => {
    const q = countQuorum(req, approvals);
    expect(q.met).toBe(met);
    expect(q.reason).toContain(text);
  });

  it("without groups, any one human approval meets a human requirement", () => {
    const plain: ReviewRequirement = { reviewers: 0, strategies: [], human: true };
    expect(countQuorum(plain, [v("olga", "human", [])]).met).toBe(true);
    expect(countQuorum(plain, []).met).toBe(false);
  });
});
