import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  checkBudget,
  decideTier,
  diffPolicies,
  explainStep,
  loadPolicy,
  parsePolicy,
  policyDigest,
  PolicyError,
  RateLimiter,
  renderPolicyDiff,
  summarizePolicy,
  type LoadedPolicy,
  type PolicyProblem,
  SHIPPED_POLICY_DIR,
} from "./index.js";

const POLICIES = SHIPPED_POLICY_DIR;
const load = (env: string) => loadPolicy(join(POLICIES, `${env}.yaml`));
const dev = load("dev");
const staging = load("staging");
const prod = load("prod");

const run = { id: "run-1", step: 1, attempt: 1 };
const payouts = (n: number) =>
  Array.from({ length: n }, (_, i) => ({ account: `a${i}`, amount: 10 }));

/** "light", "standard/1", "full/2+h", "deny": tier, quorum and human at a glance. */
function outcome(p: LoadedPolicy, tool: string, args: Record<string, unknown>): string {
  const d = decideTier(p, { tool, args, run });
  if (d.denied !== null) return "deny";
  return `${d.tier}/${d.requires.reviewers}${d.requires.human ? "+h" : ""}`;
}

describe("policy - shipped environments", () => {
  // tool, args, dev, staging, prod
  const table: [string, Record<string, unknown>, string, string, string][] = [
    ["ledger.balance", { account: "alice" }, "light/0", "light/0", "light/0"],
    ["noop.echo", { text: "hi" }, "light/0", "light/0", "light/0"],
    [
      "ledger.refund",
      { account: "carol", amount: 50, reference: "r" },
      "light/0",
      "light/0",
      "standard/2",
    ],
    ["flaky.write", { key: "k", passFromAttempt: 1 }, "light/0", "light/0", "standard/2"],
    [
      "ledger.refund",
      { account: "carol", amount: 6000, reference: "r" },
      "light/0",
      "light/0",
      "full/2",
    ],
    [
      "ledger.transfer",
      { from: "alice", to: "bob", amount: 100 },
      "standard/1",
      "standard/1",
      "standard/2",
    ],
    [
      "ledger.transfer",
      { from: "alice", to: "bob", amount: 5000 },
      "standard/1",
      "standard/1",
      "standard/2",
    ],
    [
      "ledger.transfer",
      { from: "alice", to: "bob", amount: 5000.01 },
      "standard/1",
      "standard/1",
      "full/2",
    ],
    [
      "ledger.transfer",
      { from: "alice", to: "bob", amount: 10000 },
      "standard/1",
      "standard/1",
      "full/2",
    ],
    ["ledger.transfer", { from: "alice", to: "bob", amount: 10001 }, "deny", "deny", "deny"],
    ["noop.write", { key: "k" }, "standard/1", "standard/1", "standard/2"],
    ["ledger.close_account", { account: "dave" }, "standard/1", "full/2+h", "full/2+h"],
    ["ledger.batch_payout", { batch: "b", payouts: payouts(1) }, "full/2", "full/2", "full/2"],
    ["ledger.batch_payout", { batch: "b", payouts: payouts(10) }, "full/2", "full/2", "full/2"],
    ["ledger.batch_payout", { batch: "b", payouts: payouts(11) }, "full/2", "full/2", "full/2+h"],
    ["ledger.batch_reverse", { batch: "b", payouts: payouts(11) }, "full/2", "full/2", "full/2+h"],
    ["noop.batch", { keys: [1, 2, 3, 4] }, "full/2", "full/2", "full/2"],
    ["no.such_tool", {}, "deny", "deny", "deny"],
  ];
  for (const [tool, args, ...want] of table) {
    it(`policy - ${tool} ${JSON.stringify(args).slice(0, 48)} -> dev ${want[0]}, staging ${want[1]}, prod ${want[2]}`, () => {
      expect([
        outcome(dev, tool, args),
        outcome(staging, tool, args),
        outcome(prod, tool, args),
      ]).toEqual(want);
    });
  }

  it("policy - the tool catalogue is identical across environments", () => {
    expect(staging.doc.tools).toEqual(dev.doc.tools);
    expect(prod.doc.tools).toEqual(dev.doc.tools);
    // The tools the ledger demo and the tests rely on; others may join, in every file alike.
    expect(Object.keys(dev.doc.tools)).toEqual(
      expect.arrayContaining([
        "ledger.balance",
        "ledger.transfer",
        "ledger.refund",
        "ledger.close_account",
        "ledger.batch_payout",
        "ledger.batch_reverse",
        "noop.echo",
        "noop.write",
        "noop.batch",
        "flaky.write",
      ]),
    );
  });

  it("policy - dev never asks for a human; prod asks for one on irreversible steps", () => {
    for (const t of ["light", "standard", "full"] as const)
      expect(dev.doc.tiers[t].human).toBe(false);
    expect(dev.doc.rules.some((r) => r.require?.human)).toBe(false);
    expect(
      decideTier(prod, { tool: "ledger.close_account", args: { account: "x" }, run }).requires
        .human,
    ).toBe(true);
  });

  it("policy - prod asks two humans of the treasury group for what cannot be undone", () => {
    const d = decideTier(prod, { tool: "ledger.close_account", args: { account: "x" }, run });
    expect(d.requires.humans).toEqual([{ group: "treasury", count: 2 }]);
    expect(d.explanation.at(-1)).toMatch(/\+ 2 human\(s\) of treasury$/);
  });

  it("policy - human group requirements merge: per group the largest count, a boolean adds none", () => {
    const p = parsePolicy(
      JSON.stringify({
        ...prod.doc,
        tiers: {
          ...prod.doc.tiers,
          full: { ...prod.doc.tiers.full, human: { group: "ops", count: 1 } },
        },
        rules: [
          {
            id: "a",
            when: "true",
            tier: "full",
            require: { human: { group: "treasury", count: 1 } },
          },
          { id: "b", when: "true", require: { human: { group: "treasury", count: 3 } } },
          { id: "c", when: "true", require: { human: true } },
        ],
      }),
      "merge.yaml",
    );
    const d = decideTier(p, { tool: "ledger.balance", args: { account: "x" }, run });
    expect(d.requires.human).toBe(true);
    expect(d.requires.humans).toEqual([
      { group: "treasury", count: 3 },
      { group: "ops", count: 1 },
    ]);
  });

  it("policy - a human requirement names a valid group and a count of at least one", () => {
    for (const bad of [
      { group: "Treasury!", count: 2 },
      { group: "treasury", count: 0 },
    ]) {
      expect(() =>
        parsePolicy(
          JSON.stringify({
            ...prod.doc,
            rules: [{ id: "x", when: "true", require: { human: bad } }],
          }),
          "bad.yaml",
        ),
      ).toThrow(PolicyError);
    }
  });

  it("policy - the environments have distinct digests and each digest is stable across loads", () => {
    expect(new Set([dev.digest, staging.digest, prod.digest]).size).toBe(3);
    expect(load("prod").digest).toBe(prod.digest);
  });

  it("policy - a condition that fails to evaluate fails closed and is recorded", () => {
    // wide-payouts-need-human reads size(args.payouts): without a list it cannot be judged.
    const d = decideTier(prod, { tool: "ledger.batch_payout", args: { batch: "b" }, run });
    expect(d.tier).toBe("full");
    expect(d.requires.human).toBe(true);
    expect(d.errors).toEqual([
      expect.stringContaining("rule wide-payouts-need-human: No such key: payouts"),
    ]);
    expect(d.explanation.join("\n")).toContain("could not be evaluated");
    // A deny rule that cannot be judged denies.
    const e = decideTier(dev, {
      tool: "ledger.transfer",
      args: { from: "a", to: "b", amount: "lots" },
      run,
    });
    expect(e.denied).toMatch(/^rule no-overdraft-size-transfers could not be evaluated/);
    expect(e.tier).toBe("full");
    expect(e.errors).toHaveLength(1);
  });

  it("policy - a tier assigned earlier is a floor", () => {
    const d = decideTier(dev, { tool: "ledger.balance", args: { account: "a" }, run }, "full");
    expect(d.tier).toBe("full");
    expect(d.scoreTier).toBe("light");
    expect(d.explanation).toContain("held at full: a tier once assigned never goes down");
  });

  it("policy - the explanation names the score terms and the matched rules", () => {
    const d = decideTier(prod, {
      tool: "ledger.transfer",
      args: { from: "a", to: "b", amount: 7000 },
      run,
    });
    expect(d.score).toBe(0.355);
    expect(d.terms).toEqual({ op: 0.105, objects: 0.25, crossDomain: 0, historicalFailure: 0 });
    expect(d.matched.map((m) => m.id)).toEqual([
      "writes-need-two-reviewers",
      "writes-need-two-reviewers",
      "large-amounts-full",
    ]);
    expect(d.explanation[0]).toBe(
      "risk 0.355 = op 0.105 (write) + objects 0.25 (2) + crossDomain 0 (ledger) + history 0 -> standard (standard >= 0.2, full >= 0.5)",
    );
    expect(d.explanation).toContain("rule large-amounts-full: tier >= full (raised from standard)");
    expect(JSON.parse(JSON.stringify(d)).explanation).toEqual(d.explanation);
  });
});

// Line numbers below refer to this text; keep it as it is.
const BASE = `version: 1
environment: t
risk:
  weights: { op: 0.35, objects: 0.25, crossDomain: 0.25, historicalFailure: 0.15 }
  operations: { read: 0, write: 0.3, batch_write: 0.7, delete: 1.0, irreversible: 1.0 }
  thresholds: { standard: 0.25, full: 0.60 }
tiers:
  light: { reviewers: 0, strategies: [] }
  standard: { reviewers: 1 }
  full: { reviewers: 2 }
tools:
  t.read: { op: read, objects: { count: 1 }, domains: [d] }
  t.write: { op: write, objects: { count: 2 }, domains: [d] }
rules:
  - id: big
    when: 'args.amount > 100.0'
    tier: full
`;

function withLine(n: number, text: string): string {
  const lines = BASE.split("\n");
  lines[n - 1] = text;
  return lines.join("\n");
}

function problems(text: string): PolicyProblem[] {
  try {
    parsePolicy(text, "t.yaml");
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return [...(e as PolicyError).problems];
  }
  throw new Error("policy was accepted");
}

describe("policy - bad policies are refused with file, line and reason", () => {
  it("policy - the base policy is valid", () => {
    expect(parsePolicy(BASE, "t.yaml").doc.environment).toBe("t");
  });

  const cases: [string, string, Partial<PolicyProblem>][] = [
    [
      "YAML syntax error",
      withLine(9, "  standard: reviewers: 1"),
      {
        line: 9,
        column: 13,
        path: "",
        message: "YAML: Nested mappings are not allowed in compact mappings",
      },
    ],
    [
      "YAML tab indentation",
      withLine(9, "\tstandard: { reviewers: 1 }"),
      {
        line: 9,
        column: 1,
        message:
          "YAML: Tabs are not allowed as indentation (1 more error(s) follow from it or after it)",
      },
    ],
    [
      "duplicate YAML key",
      withLine(10, "  light: { reviewers: 2 }"),
      { line: 10, message: "YAML: Map keys must be unique" },
    ],
    [
      "unknown field",
      withLine(9, "  standard: { reviewers: 1, colour: red }"),
      { line: 9, column: 29, path: "tiers.standard.colour", message: 'Unrecognized key: "colour"' },
    ],
    [
      "unknown top-level field",
      BASE + "colour: red\n",
      { line: 18, column: 1, path: "colour", message: 'Unrecognized key: "colour"' },
    ],
    [
      "wrong type",
      withLine(9, '  standard: { reviewers: "one" }'),
      {
        line: 9,
        column: 26,
        path: "tiers.standard.reviewers",
        message: "Invalid input: expected number, received string",
      },
    ],
    [
      "unknown operation",
      withLine(13, "  t.write: { op: writ, objects: { count: 2 }, domains: [d] }"),
      { line: 13, column: 18, path: "tools.t.write.op" },
    ],
    [
      "unknown function",
      withLine(16, `    when: 'tool == "t.write" && foo(args.amount)'`),
      {
        line: 16,
        column: 33,
        path: "rules.0.when",
        message: expect.stringMatching(
          /^rule "big": function "foo" is not allowed in conditions/,
        ) as string,
      },
    ],
    [
      "banned function (matches: ReDoS)",
      withLine(16, `    when: 'args.note.matches("(a+)+$")'`),
      {
        line: 16,
        column: 22,
        path: "rules.0.when",
        message: expect.stringMatching(/^rule "big": function "matches" is not allowed/) as string,
      },
    ],
    [
      "banned function on the second line of a block condition",
      withLine(16, '    when: |\n      has(args.amount) &&\n        args.note.matches("x")'),
      {
        line: 18,
        column: 19,
        path: "rules.0.when",
        message: expect.stringContaining('function "matches"') as string,
      },
    ],
    [
      "condition syntax error",
      withLine(16, "    when: 'args.amount >'"),
      {
        line: 16,
        path: "rules.0.when",
        message: 'rule "big": syntax error: Unexpected token: EOF',
      },
    ],
    [
      "condition type error",
      withLine(16, "    when: 'tool > 5'"),
      {
        line: 16,
        column: 12,
        path: "rules.0.when",
        message: 'rule "big": type error: no such overload: string > int',
      },
    ],
    [
      "condition that is not a bool",
      withLine(16, "    when: 'size(tool)'"),
      { line: 16, message: 'rule "big": a condition must be a bool, but this one is int' },
    ],
    [
      "nested comprehension",
      withLine(16, "    when: 'args.a.exists(x, args.b.exists(y, x == y))'"),
      {
        line: 16,
        column: 36,
        message: expect.stringContaining(
          '"exists" inside another comprehension is not allowed',
        ) as string,
      },
    ],
    [
      "duplicate rule id",
      BASE + "  - id: big\n    when: 'true'\n    deny: no\n",
      {
        line: 18,
        column: 9,
        path: "rules.1.id",
        message: 'duplicate rule id "big" (first used by rules.0)',
      },
    ],
    [
      "threshold order",
      withLine(6, "  thresholds: { standard: 0.7, full: 0.6 }"),
      {
        line: 6,
        column: 15,
        path: "risk.thresholds",
        message: "thresholds.standard must not exceed thresholds.full",
      },
    ],
    [
      "rule without effect",
      withLine(17, "    description: none"),
      {
        line: 15,
        path: "rules.0",
        message: "a rule needs an effect: `tier:`, `deny:` or `require:`",
      },
    ],
    [
      "condition too long",
      withLine(16, `    when: '${"true && ".repeat(300)}true'`),
      {
        line: 16,
        message: expect.stringContaining("a condition is at most 2000 characters") as string,
      },
    ],
    [
      "missing field",
      withLine(2, ""),
      { path: "environment", message: "Invalid input: expected string, received undefined" },
    ],
  ];
  for (const [name, text, want] of cases) {
    it(`policy - ${name}`, () => {
      const ps = problems(text);
      expect(ps).toHaveLength(1);
      expect(ps[0]).toMatchObject({ file: "t.yaml", ...want });
    });
  }

  it("policy - the error message carries file:line:column", () => {
    expect(() => parsePolicy(withLine(16, "    when: 'tool > 5'"), "t.yaml")).toThrow(
      /^t\.yaml:16:12: rules\.0\.when: rule "big": type error/,
    );
  });

  it("policy - every bad condition in a file is reported, not just the first", () => {
    const text = BASE + "  - id: two\n    when: 'nope(1)'\n    deny: x\n";
    const ps = problems(withLine(16, "    when: 'tool >'"));
    expect(ps).toHaveLength(1);
    const both = problems(text.replace("'args.amount > 100.0'", "'tool >'"));
    expect(both.map((p) => p.line)).toEqual([16, 19]);
  });

  it("policy - an unreadable file is a PolicyError", () => {
    expect(() => loadPolicy(join(POLICIES, "nope.yaml"))).toThrow(PolicyError);
  });

  it("policy - an alias bomb is refused, not expanded", () => {
    const bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
    for (let i = 0; i < 8; i++)
      bomb.push(
        `${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10)
          .fill(`*${String.fromCharCode(97 + i)}`)
          .join(", ")}]`,
      );
    expect(() => parsePolicy(bomb.join("\n"), "bomb.yaml")).toThrow(PolicyError);
  });
});

describe("policy - digest", () => {
  it("policy - key order does not change the digest", () => {
    const reordered = `environment: t
version: 1
rules:
  - tier: full
    when: 'args.amount > 100.0'
    id: big
tools:
  t.write: { domains: [d], objects: { count: 2 }, op: write }
  t.read: { objects: { count: 1 }, op: read, domains: [d] }
tiers:
  full: { reviewers: 2 }
  standard: { reviewers: 1 }
  light: { strategies: [], reviewers: 0 }
risk:
  thresholds: { full: 0.60, standard: 0.25 }
  operations: { irreversible: 1.0, delete: 1.0, batch_write: 0.7, write: 0.3, read: 0 }
  weights: { historicalFailure: 0.15, crossDomain: 0.25, objects: 0.25, op: 0.35 }
`;
    expect(parsePolicy(reordered).digest).toBe(parsePolicy(BASE).digest);
    // Comments and layout are not policy either.
    expect(
      parsePolicy("# a comment\n" + BASE.replace("{ reviewers: 2 }", "\n    reviewers: 2")).digest,
    ).toBe(parsePolicy(BASE).digest);
  });

  it("policy - changing any single value changes the digest", () => {
    for (const p of [dev, staging, prod]) {
      const leaves: (string | number)[][] = [];
      const walk = (v: unknown, path: (string | number)[]) => {
        if (Array.isArray(v)) v.forEach((x, i) => walk(x, [...path, i]));
        else if (v !== null && typeof v === "object")
          for (const [k, x] of Object.entries(v)) walk(x, [...path, k]);
        else leaves.push(path);
      };
      walk(p.doc, []);
      expect(leaves.length).toBeGreaterThan(80);
      for (const path of leaves) {
        const copy = structuredClone(p.doc) as unknown as Record<string | number, unknown>;
        let parent: Record<string | number, unknown> = copy;
        for (const k of path.slice(0, -1)) parent = parent[k] as Record<string | number, unknown>;
        const last = path[path.length - 1]!;
        const v = parent[last];
        parent[last] =
          typeof v === "number" ? v + 1 : typeof v === "boolean" ? !v : `${String(v)}x`;
        expect(policyDigest(copy as never), path.join(".")).not.toBe(p.digest);
      }
    }
  });
});

describe("policy - CLI helpers", () => {
  it("policy - explainStep shows terms, rules, tier and why", () => {
    const text = explainStep(prod, {
      tool: "ledger.transfer",
      args: { from: "a", to: "b", amount: 7000 },
    });
    expect(text).toContain("policy prod");
    expect(text).toContain("score  0.355");
    expect(text).toMatch(/op\s+0\.105\s+= 0\.35 x 0\.3 \(write\)/);
    expect(text).toContain("large-amounts-full: tier >= full");
    expect(text).toContain("tier   full: 2 reviewer(s) [rules, llm]");
    expect(text).toContain("why    risk 0.355");
    expect(explainStep(dev, { tool: "ledger.transfer", args: { amount: 20000 } })).toContain(
      "DENIED rule no-overdraft-size-transfers",
    );
    expect(explainStep(dev, { tool: "nope" })).toContain("tool not in the catalogue");
  });

  it("policy - diffPolicies lists the tools whose outcome changes between environments", () => {
    const rows = diffPolicies(dev, prod);
    const tierChanges = rows
      .filter((r) => r.tierChanged)
      .map((r) => `${r.tool}:${r.tierA}->${r.tierB}`);
    expect(tierChanges).toEqual(
      expect.arrayContaining([
        "flaky.write:light->standard",
        "ledger.close_account:standard->full",
        "ledger.refund:light->standard",
        "ledger.refund:light->full",
        "ledger.transfer:standard->full",
      ]),
    );
    // Reads never change tier between the shipped environments; the rows come sorted by tool.
    for (const r of rows) expect(dev.doc.tools[r.tool]?.op, r.tool).not.toBe("read");
    expect(rows.map((r) => r.tool)).toEqual(rows.map((r) => r.tool).sort());
    expect(rows.find((r) => r.tool === "ledger.batch_payout")).toMatchObject({
      tierA: "full",
      tierB: "full",
      humanA: false,
      humanB: true,
    });
    expect(diffPolicies(dev, dev)).toEqual([]);
    expect(diffPolicies(dev, staging).map((r) => r.tool)).toEqual(["ledger.close_account"]);
    const text = renderPolicyDiff(dev, prod, rows);
    expect(text.split("\n")[0]).toMatch(/^dev \([0-9a-f]{12}\) -> prod \([0-9a-f]{12}\)$/);
    expect(text).toMatch(
      /ledger\.close_account\s+account=dave\s+standard \(1r\)\s+full \(2r\+h\)\s+tier/,
    );
    expect(renderPolicyDiff(dev, dev, [])).toContain("no differences");
  });

  it("policy - summarizePolicy gives digest, environment, tiers and rule count", () => {
    const s = summarizePolicy(prod);
    expect(s).toContain(`digest ${prod.digest}`);
    expect(s).toContain("policy prod");
    expect(s).toMatch(/tier\s+standard 2 reviewer\(s\) \[rules, llm\]/);
    expect(s).toContain("rules  5 (4 raise a tier, 1 deny, 3 add requirements)");
    expect(s).toContain(
      "rate-limited: ledger.batch_payout 60/min delay (max 300 s), ledger.batch_reverse 60/min delay (max 300 s)",
    );
  });
});

describe("policy - budgets and rate limits", () => {
  it("policy - a run within budget passes; one past any limit gets the reason", () => {
    expect(checkBudget(prod, { steps: 30, tokens: 100_000, costUsd: 2 })).toBeNull();
    expect(checkBudget(prod, { steps: 31, tokens: 0, costUsd: 0 })).toBe(
      "budget exceeded: 31 steps used, the prod policy allows 30 per run",
    );
    expect(checkBudget(prod, { steps: 1, tokens: 100_001, costUsd: 0 })).toBe(
      "budget exceeded: 100001 tokens used, the prod policy allows 100000 per run",
    );
    expect(checkBudget(prod, { steps: 1, tokens: 1, costUsd: 2.5 })).toBe(
      "budget exceeded: 2.5000 USD used, the prod policy allows 2 per run",
    );
    expect(checkBudget(dev, { steps: 31 })).toBeNull();
    expect(checkBudget(dev, { costUsd: Number.NaN })).toMatch(/not a finite non-negative number/);
    expect(checkBudget(dev, { tokens: -1 })).toMatch(/not a finite non-negative number/);
  });

  it("policy - the rate limiter allows ratePerMinute calls in any 60 s window", () => {
    const rl = new RateLimiter(prod);
    const t0 = 1_000_000;
    for (let i = 0; i < 60; i++) expect(rl.take("ledger.batch_payout", t0 + i * 100)).toBeNull();
    expect(rl.take("ledger.batch_payout", t0 + 6_000)).toBe(
      "rate limit: ledger.batch_payout allows 60 call(s) per 60 s in prod, 60 in the window; retry in 54 s",
    );
    // Tools are limited separately; tools without a limit are never refused.
    expect(rl.take("ledger.batch_reverse", t0 + 6_000)).toBeNull();
    for (let i = 0; i < 1000; i++) expect(rl.take("ledger.balance", t0)).toBeNull();
    // The window slides: the first call leaves it 60 s after it was made.
    expect(rl.check("ledger.batch_payout", t0 + 59_999)).not.toBeNull();
    expect(rl.check("ledger.batch_payout", t0 + 60_000)).toBeNull();
    // A refused call is not counted.
    expect(rl.take("ledger.batch_payout", t0 + 60_000)).toBeNull();
    expect(rl.take("ledger.batch_payout", t0 + 60_001)).not.toBeNull();
  });

  it("policy - the rate limiter replays recorded history and counts a clock that went back", () => {
    const a = new RateLimiter(prod);
    for (let i = 59; i >= 0; i--) a.record("ledger.batch_payout", 10_000 + i);
    expect(a.check("ledger.batch_payout", 10_100)).not.toBeNull();
    expect(a.check("ledger.batch_payout", 9_000)).not.toBeNull();
    expect(a.check("ledger.batch_payout", 70_060)).toBeNull();
    expect(a.check("ledger.batch_payout", Number.NaN)).toMatch(/not a finite number/);
  });
});
