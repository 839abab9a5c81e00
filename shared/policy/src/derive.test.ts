import { describe, expect, it } from "vitest";
import { tierRank, type Tier } from "@trias/protocol";
import { checkAssignment, deriveStep, unknownRun } from "./derive.js";
import { loadPolicy } from "./load.js";
import { shippedPolicyFile } from "./paths.js";

// What a step requires, derived by one function for the router, the executor and the
// verifier; and the comparison a gatekeeper makes with a signed assignment.
const dev = loadPolicy(shippedPolicyFile("dev"));
const prod = loadPolicy(shippedPolicyFile("prod"));

const step = (tool: string, args: Record<string, unknown>, attempt = 0) => ({
  tool,
  args,
  run: "r1",
  step: 0,
  attempt,
});
const PAYOUT = step("ledger.batch_payout", {
  batch: "b",
  payouts: [
    { account: "bob", amount: 1 },
    { account: "carol", amount: 1 },
  ],
});
const FLAKY = step("flaky.write", { key: "k", passFromAttempt: 0 });

describe("deriveStep", () => {
  it("derive - the shipped tools' tiers with nothing known of the run", () => {
    const tiers = [
      step("ledger.balance", { account: "a" }),
      step("ledger.transfer", { from: "a", to: "b", amount: 1 }),
      PAYOUT,
    ].map((s) => deriveStep(dev, s, unknownRun()).decision.tier);
    expect(tiers).toEqual(["light", "standard", "full"]);
  });

  it("derive - a failure earlier in the run raises a light step to the after-failure tier", () => {
    const d = deriveStep(dev, FLAKY, { proposals: 2, failures: 1, stepFloor: "light" });
    expect(d.unraised).toBe("light");
    expect(d.decision.tier).toBe(dev.doc.escalation.afterFailure);
  });

  it("derive - the lower bounds of unknownRun are never stricter than any run the router may see", () => {
    const views = [
      { proposals: 1, failures: 0, stepFloor: "light" as Tier },
      { proposals: 7, failures: 2, stepFloor: "standard" as Tier },
      { proposals: 40, failures: 0, stepFloor: "full" as Tier },
    ];
    for (const p of [dev, prod])
      for (const name of Object.keys(p.doc.tools))
        for (const v of views) {
          const s = step(name, { account: "a", payouts: [{}, {}, {}] });
          const low = deriveStep(p, s, unknownRun()).decision.tier;
          expect(tierRank(low)).toBeLessThanOrEqual(tierRank(deriveStep(p, s, v).decision.tier));
        }
  });
});

const REQ = {
  light: { reviewers: 0, strategies: [], human: false },
  std: { reviewers: 1, strategies: ["rules" as const], human: false },
  full: { reviewers: 2, strategies: ["rules" as const], human: false },
};

describe("checkAssignment", () => {
  const CASES: [string, Parameters<typeof checkAssignment>, boolean | string][] = [
    [
      "the policy's own assignment",
      [dev, PAYOUT, unknownRun(), { tier: "full", requires: REQ.full, denied: null }],
      true,
    ],
    [
      "light with no reviewer for a full step",
      [dev, PAYOUT, unknownRun(), { tier: "light", requires: REQ.light, denied: null }],
      "tier_downgrade",
    ],
    [
      "full with one reviewer where the policy wants two",
      [dev, PAYOUT, unknownRun(), { tier: "full", requires: REQ.std, denied: null }],
      "tier_downgrade",
    ],
    [
      "a retry after a failure routed light (the floor the run imposes)",
      [
        dev,
        step("flaky.write", { key: "k", passFromAttempt: 0 }, 1),
        { proposals: 2, failures: 1, stepFloor: "light" },
        { tier: "light", requires: REQ.light, denied: null },
      ],
      "tier_downgrade",
    ],
    [
      "the same retry seen without the run (the executor's lower bound) passes",
      [
        dev,
        step("flaky.write", { key: "k", passFromAttempt: 0 }, 1),
        unknownRun(),
        { tier: "light", requires: REQ.light, denied: null },
      ],
      true,
    ],
    [
      "a step the policy denies, assigned as allowed",
      [
        dev,
        step("ledger.transfer", { from: "a", to: "b", amount: 20_000 }),
        unknownRun(),
        { tier: "standard", requires: REQ.std, denied: null },
      ],
      "policy_denied",
    ],
    [
      "a higher tier than the policy's (a floor) is accepted",
      [
        dev,
        step("ledger.balance", { account: "a" }),
        unknownRun(),
        { tier: "standard", requires: REQ.std, denied: null },
      ],
      true,
    ],
    [
      "a higher tier with the lower tier's requirement is not",
      [
        dev,
        step("ledger.balance", { account: "a" }),
        unknownRun(),
        { tier: "full", requires: REQ.std, denied: null },
      ],
      "tier_downgrade",
    ],
  ];
  it.each(CASES)("assignment - %s", (_n, args, want) => {
    const r = checkAssignment(...args);
    if (want === true) expect(r.ok).toBe(true);
    else expect(!r.ok && r.code).toBe(want);
  });

  it("assignment - the policy's groups of humans can be neither dropped nor lowered", () => {
    const close = step("ledger.close_account", { account: "dave" });
    const d = deriveStep(prod, close, unknownRun()).decision;
    expect(d.requires.humans).toEqual([{ group: "treasury", count: 2 }]);
    const anyHuman = { ...d.requires, humans: undefined };
    const oneOfTreasury = { ...d.requires, humans: [{ group: "treasury", count: 1 }] };
    for (const requires of [anyHuman, oneOfTreasury]) {
      const r = checkAssignment(prod, close, unknownRun(), {
        tier: d.tier,
        requires,
        denied: null,
      });
      expect(!r.ok && r.code).toBe("tier_downgrade");
    }
    const more = { ...d.requires, humans: [{ group: "treasury", count: 3 }] };
    const r = checkAssignment(prod, close, unknownRun(), {
      tier: d.tier,
      requires: more,
      denied: null,
    });
    expect(r.ok && r.requires.humans).toEqual([{ group: "treasury", count: 3 }]);
    const own = checkAssignment(prod, close, unknownRun(), {
      tier: d.tier,
      requires: d.requires,
      denied: null,
    });
    expect(own.ok && own.requires.humans).toEqual([{ group: "treasury", count: 2 }]);
  });

  it("assignment - acts on the policy's strategies at the tier acted on, not the signer's", () => {
    const r = checkAssignment(dev, PAYOUT, unknownRun(), {
      tier: "full",
      requires: { reviewers: 2, strategies: ["rules", "llm", "human"], human: false },
      denied: null,
    });
    expect(r.ok && r.requires.strategies).toEqual(["rules"]);
  });

  it("assignment - the router's assign and the gatekeepers' derivation agree", () => {
    const d = deriveStep(dev, PAYOUT, unknownRun()).decision;
    const r = checkAssignment(dev, PAYOUT, unknownRun(), {
      tier: d.tier,
      requires: d.requires,
      denied: d.denied,
    });
    expect(r.ok && r.requires).toEqual(d.requires);
  });
});
