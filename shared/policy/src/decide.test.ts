import { join } from "node:path";
import { Environment } from "@marcbachmann/cel-js";
import fc from "fast-check";
import { stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { TIER_ORDER, tierRank, type Tier } from "@trias/protocol";
import {
  CONDITION_VARIABLES,
  decideTier,
  loadPolicy,
  parsePolicy,
  PolicyError,
  type CompiledCondition,
  type ConditionFacts,
  type LoadedPolicy,
  type StepFacts,
  SHIPPED_POLICY_DIR,
} from "./index.js";

const POLICIES = SHIPPED_POLICY_DIR;
const ENVS = ["dev", "staging", "prod"].map((e) => loadPolicy(join(POLICIES, `${e}.yaml`)));
const dev = ENVS[0]!;
const RUNS = Number(process.env["TRIAS_FC_RUNS"] ?? 500);

const TOOLS = [
  ...Object.keys(dev.doc.tools),
  "no.such",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
];
const toolArb = fc.oneof(fc.constantFrom(...TOOLS), fc.string());
const stepArgs = fc.oneof(
  fc.record(
    {
      amount: fc.oneof(fc.double(), fc.integer(), fc.string(), fc.constant(null)),
      payouts: fc.oneof(
        fc.array(fc.record({ account: fc.string(), amount: fc.integer() }), { maxLength: 15 }),
        fc.anything(),
      ),
      account: fc.string(),
      note: fc.string(),
    },
    { requiredKeys: [] },
  ),
  fc.dictionary(fc.string(), fc.jsonValue()),
);
const stepArb: fc.Arbitrary<StepFacts> = fc.record({
  tool: toolArb,
  args: stepArgs,
  run: fc.record({ id: fc.string(), step: fc.nat(), attempt: fc.nat({ max: 10 }) }),
});
const floorArb = fc.constantFrom<Tier>("light", "standard", "full");

/** Rule conditions in the shapes policies use, with their constants drawn at random. */
const conditionArb = fc.oneof(
  fc.double({ min: 0, max: 20_000, noNaN: true }).map((n) => `args.amount > ${n.toFixed(2)}`),
  fc.constantFrom(...Object.keys(dev.doc.tools)).map((t) => `tool == "${t}"`),
  fc.nat({ max: 15 }).map((n) => `size(args.payouts) > ${n}`),
  fc.constantFrom("amount", "payouts", "note", "x").map((k) => `has(args.${k})`),
  fc.constantFrom("read", "write", "batch_write", "delete").map((o) => `op == "${o}"`),
  fc.constant('"bank" in domains'),
  fc.nat({ max: 5 }).map((n) => `run.attempt > ${n}`),
  fc.constant('args.note.startsWith("urgent")'),
);
const whenArb = fc.oneof(
  conditionArb,
  fc.tuple(conditionArb, conditionArb).map(([a, b]) => `${a} && ${b}`),
  fc.tuple(conditionArb, conditionArb).map(([a, b]) => `${a} || ${b}`),
  conditionArb.map((a) => `!(${a})`),
);
const ruleArb = fc
  .record(
    {
      when: whenArb,
      tier: fc.constantFrom<Tier>("light", "standard", "full"),
      deny: fc.constant("refused by a random rule"),
      require: fc.record(
        { human: fc.boolean(), reviewers: fc.nat({ max: 4 }) },
        { requiredKeys: [] },
      ),
    },
    { requiredKeys: ["when"] },
  )
  .filter((r) => r.tier !== undefined || r.deny !== undefined || r.require !== undefined);

function withRules(base: LoadedPolicy, rules: Record<string, unknown>[]): LoadedPolicy {
  const doc = {
    ...base.doc,
    rules: [...base.doc.rules, ...rules.map((r, i) => ({ id: `random-${i}`, ...r }))],
  };
  return parsePolicy(stringify(doc), "<random>");
}

function withoutRules(p: LoadedPolicy): LoadedPolicy {
  return { ...p, doc: { ...p.doc, rules: [] }, conditions: new Map() };
}

/** The same policy with every condition run by the CEL engine alone: no specialising, no fast path. */
const celEnv = (() => {
  const e = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
  });
  for (const [name, type] of Object.entries(CONDITION_VARIABLES)) e.registerVariable(name, type);
  return e;
})();
function engineOnly(p: LoadedPolicy): LoadedPolicy {
  const conditions = new Map<string, CompiledCondition>();
  for (const r of p.doc.rules) {
    const program = celEnv.parse(r.when);
    program.check();
    conditions.set(r.id, {
      source: r.when,
      reads: new Set(),
      evaluate(f: ConditionFacts): boolean {
        const v: unknown = program(f);
        if (typeof v !== "boolean") throw new Error("not bool");
        return v;
      },
    });
  }
  return { ...p, conditions };
}

describe("policy - decideTier properties", () => {
  it("policy - decideTier never throws, whatever the tool, args, run or floor", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ENVS),
        toolArb,
        fc.anything(),
        fc.anything(),
        fc.oneof(floorArb, fc.string() as fc.Arbitrary<Tier>),
        (policy, tool, args, run, floor) => {
          const d = decideTier(policy, { tool, args, run } as unknown as StepFacts, floor);
          expect(TIER_ORDER).toContain(d.tier);
          if (TIER_ORDER.includes(floor))
            expect(tierRank(d.tier)).toBeGreaterThanOrEqual(tierRank(floor));
          expect(d.explanation.every((l) => typeof l === "string")).toBe(true);
          if (!Object.hasOwn(policy.doc.tools, tool)) expect(d.denied).not.toBeNull();
        },
      ),
      { numRuns: RUNS * 4 },
    );
  });

  it("policy - a rule never lowers a tier, a quorum or a human requirement", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ENVS),
        fc.array(ruleArb, { minLength: 1, maxLength: 6 }),
        fc.array(stepArb, { minLength: 1, maxLength: 8 }),
        floorArb,
        (base, rules, steps, floor) => {
          const withR = withRules(base, rules);
          const without = withoutRules(withR);
          for (const s of steps) {
            const a = decideTier(withR, s, floor);
            const b = decideTier(without, s, floor);
            expect(tierRank(a.tier)).toBeGreaterThanOrEqual(tierRank(b.tier));
            expect(a.requires.reviewers).toBeGreaterThanOrEqual(b.requires.reviewers);
            if (b.requires.human) expect(a.requires.human).toBe(true);
            if (b.denied !== null) expect(a.denied).not.toBeNull();
            expect(a.scoreTier).toBe(b.scoreTier);
          }
        },
      ),
      { numRuns: RUNS },
    );
  });

  it("policy - per-tool specialising and the fast path decide exactly as the plain CEL engine", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...ENVS),
        fc.array(ruleArb, { maxLength: 6 }),
        fc.array(stepArb, { minLength: 1, maxLength: 8 }),
        (base, rules, steps) => {
          const fast = withRules(base, rules);
          const slow = engineOnly(fast);
          for (const s of steps) {
            const a = decideTier(fast, s);
            const b = decideTier(slow, s);
            expect({
              tier: a.tier,
              denied: a.denied !== null,
              requires: a.requires,
              matched: a.matched,
              errors: a.errors.length,
            }).toEqual({
              tier: b.tier,
              denied: b.denied !== null,
              requires: b.requires,
              matched: b.matched,
              errors: b.errors.length,
            });
          }
        },
      ),
      { numRuns: RUNS },
    );
  });
});

describe("policy - hostile condition text", () => {
  const CANARY = "__triasPolicyCanary";
  const attacks = [
    `constructor.constructor("globalThis.${CANARY} = 'pwned'")()`,
    `args.constructor.constructor("globalThis.${CANARY} = 'pwned'")()`,
    `tool.constructor.constructor("globalThis.${CANARY} = 'pwned'")()`,
    `globalThis.${CANARY} = "pwned"`,
    `${CANARY} == "untouched"`,
    `process.exit(1)`,
    `require("child_process").execSync("touch /tmp/pwned")`,
    `import("fs")`,
    `eval("globalThis.${CANARY} = 1")`,
    `Function("globalThis.${CANARY} = 1")()`,
    "`${globalThis." + CANARY + " = 1}`",
    `args.__proto__.polluted == true`,
    `has(args.__proto__.polluted)`,
    `args["__proto__"]["polluted"] == 1`,
    `{"__proto__": {"polluted": true}}.polluted`,
    `tool.__defineGetter__("x", 1)`,
    `this.${CANARY} == 1`,
    `args.payouts.map(p, p).map(q, q).size() > 0`,
    "(".repeat(10_000),
    "[".repeat(500) + "]".repeat(500) + " == []",
    "a" + ".b".repeat(3000),
    `"${"x".repeat(5000)}" == tool`,
    "1" + " + 1".repeat(900) + " > 0",
  ];
  const soup = fc
    .array(
      fc.constantFrom(
        "tool",
        "args",
        "run",
        "op",
        "domains",
        "env",
        ".",
        "amount",
        "payouts",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "!",
        "in",
        "?",
        ":",
        ",",
        "size",
        "has",
        "matches",
        "exists",
        "all",
        "map",
        "filter",
        '"x"',
        "'y'",
        "1",
        "1.5",
        "-",
        "+",
        "*",
        "/",
        "%",
        "true",
        "null",
        "constructor",
        "__proto__",
        "x",
        " ",
        "\n",
        "\\",
        '"',
        "`",
        "${",
        "u",
        'b""',
      ),
      { maxLength: 30 },
    )
    .map((t) => t.join(""));
  const text = fc.oneof(
    fc.constantFrom(...attacks),
    soup,
    fc.string(),
    fc.string({ unit: "binary" }),
    fc.string({ unit: "grapheme" }),
  );

  function policyWith(when: string): string {
    // JSON strings are valid YAML double-quoted scalars.
    return `version: 1
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
  t.write: { op: write, objects: { countOf: payouts }, domains: [d] }
rules:
  - id: r
    when: ${JSON.stringify(when)}
    tier: full
`;
  }

  it("policy - random condition text is refused with a PolicyError or loads; it never runs code", () => {
    const g = globalThis as Record<string, unknown>;
    g[CANARY] = "untouched";
    let loaded = 0;
    fc.assert(
      fc.property(text, stepArb, (when, step) => {
        let p: LoadedPolicy | undefined;
        try {
          p = parsePolicy(policyWith(when), "random.yaml");
        } catch (e) {
          expect(e).toBeInstanceOf(PolicyError);
          expect((e as PolicyError).problems.length).toBeGreaterThan(0);
        }
        if (p) {
          loaded++;
          const d = decideTier(p, { ...step, tool: "t.write" });
          expect(TIER_ORDER).toContain(d.tier);
        }
        expect(g[CANARY]).toBe("untouched");
        expect(({} as Record<string, unknown>)["polluted"]).toBeUndefined();
      }),
      { numRuns: RUNS * 6 },
    );
    // Every attack string on its own, too.
    for (const a of attacks) {
      try {
        const p = parsePolicy(policyWith(a), "attack.yaml");
        decideTier(p, {
          tool: "t.write",
          args: { payouts: [1] },
          run: { id: "r", step: 1, attempt: 1 },
        });
      } catch (e) {
        expect(e, a.slice(0, 40)).toBeInstanceOf(PolicyError);
      }
    }
    expect(g[CANARY]).toBe("untouched");
    expect(loaded).toBeGreaterThan(0);
    delete g[CANARY];
  });

  it("policy - random whole files are refused with a PolicyError, never another exception", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string(),
          fc.string({ unit: "binary" }),
          fc.jsonValue().map((v) => stringify(v)),
        ),
        (t) => {
          try {
            parsePolicy(t, "random.yaml");
          } catch (e) {
            expect(e).toBeInstanceOf(PolicyError);
          }
        },
      ),
      { numRuns: RUNS * 4 },
    );
  });
});
