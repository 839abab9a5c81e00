import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { checkArguments, parsePolicy, PolicyError, shippedPolicyFile } from "./index.js";

const dev = readFileSync(shippedPolicyFile("dev"), "utf8");
const policy = parsePolicy(dev, "dev.yaml");

describe("policy argument checks", () => {
  it.each([
    [
      "a transfer within the limit",
      "ledger.transfer",
      { from: "a", to: "b", amount: 10_000 },
      "approve",
    ],
    [
      "a transfer over the limit",
      "ledger.transfer",
      { from: "a", to: "b", amount: 10_000.5 },
      "reject",
    ],
    ["closing the treasury", "ledger.close_account", { account: "treasury" }, "reject"],
    ["closing another account", "ledger.close_account", { account: "dave" }, "approve"],
    [
      "a batch paying the treasury",
      "ledger.batch_payout",
      { payouts: [{ account: "treasury", amount: 1 }] },
      "reject",
    ],
    [
      "a check that cannot be evaluated (missing argument): fail closed",
      "ledger.transfer",
      {},
      "reject",
    ],
    ["a tool without checks", "ledger.balance", { account: "a" }, "approve"],
  ])("%s", (_n, tool, args, decision) => {
    expect(checkArguments(policy, tool, args).decision).toBe(decision);
  });

  it("a check whose condition does not compile is refused with its line", () => {
    const text = dev.replace('when: "args.amount > 10000.0"', 'when: "args.amount >"');
    const line = text.split("\n").findIndex((l) => l.includes('when: "args.amount >"')) + 1;
    let err: unknown;
    try {
      parsePolicy(text, "bad.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PolicyError);
    expect((err as PolicyError).problems[0]).toMatchObject({
      line,
      path: "tools.ledger.transfer.checks.0.when",
    });
  });
});
