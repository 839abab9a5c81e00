import { describe, expect, it } from "vitest";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import { Catalogue, ledgerPack } from "@trias/tools";
import { reviewByRules } from "./index.js";

const tools = await Catalogue.open([ledgerPack], null);
const policy = loadPolicy(shippedPolicyFile("dev"));

const p = (tool: string, args: Record<string, unknown>, over: Record<string, unknown> = {}) =>
  ({
    tool,
    args,
    rationale: "why",
    expected: "what",
    index: 0,
    total: 1,
    replanOf: null,
    ...over,
  }) as never;

describe("reviewer rules", () => {
  it.each([
    ["a valid transfer", p("ledger.transfer", { from: "alice", to: "bob", amount: 10 }), "approve"],
    [
      "a transfer over the limit",
      p("ledger.transfer", { from: "alice", to: "bob", amount: 10_001 }),
      "reject",
    ],
    [
      "a transfer to oneself",
      p("ledger.transfer", { from: "bob", to: "bob", amount: 1 }),
      "reject",
    ],
    ["an unknown tool", p("shell.exec", { cmd: "rm -rf /" }), "reject"],
    ["an unexpected argument", p("ledger.balance", { account: "alice", sql: "drop" }), "reject"],
    ["no rationale", p("ledger.balance", { account: "alice" }, { rationale: " " }), "revise"],
    ["closing the treasury", p("ledger.close_account", { account: "treasury" }), "reject"],
    [
      "a batch paying one account twice",
      p("ledger.batch_payout", {
        batch: "b",
        payouts: [
          { account: "bob", amount: 1 },
          { account: "bob", amount: 2 },
        ],
      }),
      "reject",
    ],
    [
      "a batch paying the treasury (policy check)",
      p("ledger.batch_payout", {
        batch: "b",
        payouts: [{ account: "treasury", amount: 1 }],
      }),
      "reject",
    ],
    [
      "a batch of 51 (policy check)",
      p("ledger.batch_payout", {
        batch: "b",
        payouts: Array.from({ length: 51 }, (_, i) => ({ account: `a${i}`, amount: 1 })),
      }),
      "reject",
    ],
    [
      "a batch over the pack's total",
      p("ledger.batch_payout", {
        batch: "b",
        payouts: [
          { account: "bob", amount: 30_000 },
          { account: "carol", amount: 30_000 },
        ],
      }),
      "reject",
    ],
    [
      "a valid batch",
      p("ledger.batch_payout", {
        batch: "b",
        payouts: [
          { account: "bob", amount: 1 },
          { account: "carol", amount: 2 },
        ],
      }),
      "approve",
    ],
  ])("reviewer - %s gets %s", (_name, proposal, decision) => {
    const v = reviewByRules(proposal, tools, policy);
    expect(v.decision).toBe(decision);
    expect(v.reasons.length).toBeGreaterThan(0);
  });

  it("a policy check's id and message are the reason", () => {
    const v = reviewByRules(
      p("ledger.transfer", { from: "alice", to: "bob", amount: 20_000 }),
      tools,
      policy,
    );
    expect(v).toEqual({
      decision: "reject",
      reasons: ["transfer-limit: transfers above 10,000 are refused"],
    });
  });
});
