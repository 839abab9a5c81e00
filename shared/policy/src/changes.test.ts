import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  loadPolicy,
  parsePolicy,
  policyChanges,
  renderPolicyChanges,
  runPolicyCases,
  SHIPPED_POLICY_DIR,
  type PolicyCase,
} from "./index.js";

const prod = loadPolicy(join(SHIPPED_POLICY_DIR, "prod.yaml"));
const variant = (change: (doc: Record<string, unknown>) => void) => {
  const doc = structuredClone(prod.doc) as unknown as Record<string, unknown>;
  change(doc);
  return parsePolicy(JSON.stringify(doc), "variant.yaml");
};

describe("policyChanges", () => {
  it("a policy against itself has no change", () => {
    expect(policyChanges(prod, prod)).toEqual([]);
    expect(renderPolicyChanges([])).toEqual(["no rule, threshold, quorum or tool entry differs"]);
  });

  const table: [string, (doc: Record<string, unknown>) => void, string, string, string[]][] = [
    [
      "a removed rule, with the tools it matched",
      (d) => {
        d["rules"] = (d["rules"] as { id: string }[]).filter(
          (r) => r.id !== "wide-payouts-need-human",
        );
      },
      "removed",
      "rule wide-payouts-need-human",
      ["ledger.batch_payout", "ledger.batch_reverse"],
    ],
    [
      "a changed quorum of people",
      (d) => {
        const r = (d["rules"] as { id: string; require?: unknown }[]).find(
          (x) => x.id === "irreversible-needs-human",
        )!;
        r.require = { human: { group: "treasury", count: 3 } };
      },
      "changed",
      "rule irreversible-needs-human",
      ["ledger.close_account"],
    ],
    [
      "an added rule naming a tool its samples do not trigger",
      (d) => {
        (d["rules"] as unknown[]).push({
          id: "big-refunds",
          when: 'tool == "ledger.refund" && args.amount > 90000.0',
          deny: "no",
        });
      },
      "added",
      "rule big-refunds",
      ["ledger.refund"],
    ],
    [
      "a changed tier quorum, with the tools on that tier",
      (d) => {
        (d["tiers"] as Record<string, Record<string, unknown>>)["full"]!["reviewers"] = 3;
      },
      "changed",
      "tier full reviewers",
      [
        "ledger.batch_payout",
        "ledger.batch_reverse",
        "ledger.close_account",
        "ledger.refund",
        "ledger.transfer",
        "noop.batch",
      ],
    ],
    [
      "a removed tool entry",
      (d) => {
        delete (d["tools"] as Record<string, unknown>)["noop.echo"];
      },
      "removed",
      "tool noop.echo",
      ["noop.echo"],
    ],
  ];
  it.each(table)("%s", (_what, change, kind, what, tools) => {
    const changes = policyChanges(prod, variant(change));
    const c = changes.find((x) => x.what === what);
    expect(c, JSON.stringify(changes.map((x) => x.what))).toBeDefined();
    expect(c!.change).toBe(kind);
    expect(c!.tools).toEqual(tools);
    expect(renderPolicyChanges([c!])[0]).toMatch(/^[-+~] /);
  });

  it("a changed threshold lists the tools whose sample steps change outcome", () => {
    const c = policyChanges(
      prod,
      variant((d) => {
        (d["risk"] as { thresholds: { full: number } }).thresholds.full = 0.9;
      }),
    ).find((x) => x.what === "threshold full")!;
    expect(c.before).toBe(0.5);
    expect(c.after).toBe(0.9);
    expect(c.tools).toContain("noop.batch");
  });
});

describe("runPolicyCases", () => {
  const cases: PolicyCase[] = [
    {
      name: "ok",
      step: { tool: "ledger.close_account", args: { account: "d" } },
      expect: { tier: "full", humans: [{ group: "treasury", count: 2 }] },
    },
    {
      name: "wrong tier",
      step: { tool: "ledger.balance", args: { account: "a" } },
      expect: { tier: "full" },
    },
    {
      name: "deny text",
      step: { tool: "ledger.transfer", args: { from: "a", to: "b", amount: 20000 } },
      expect: { deny: "treasury desk" },
    },
    {
      name: "not denied",
      step: { tool: "ledger.balance", args: { account: "a" } },
      expect: { deny: true, reviewers: 1 },
    },
    {
      name: "rule",
      step: { tool: "ledger.refund", args: { account: "a", amount: 1 } },
      expect: { rules: ["large-amounts-full"] },
    },
  ];
  it("passes what the policy decides and names each field that differs", () => {
    const r = runPolicyCases(prod, cases);
    expect(r.map((x) => [x.name, x.ok])).toEqual([
      ["ok", true],
      ["wrong tier", false],
      ["deny text", true],
      ["not denied", false],
      ["rule", false],
    ]);
    expect(r[1]!.failures).toEqual(['tier: expected "full", got "light"']);
    expect(r[3]!.failures).toEqual([
      "deny: expected true, got false",
      "reviewers: expected 1, got 0",
    ]);
    expect(r[4]!.failures[0]).toMatch(/expected large-amounts-full to match/);
  });
});
