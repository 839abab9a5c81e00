import { Environment } from "@marcbachmann/cel-js";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  ALLOWED_FUNCTIONS,
  compileCondition,
  ConditionError,
  CONDITION_VARIABLES,
  type ConditionFacts,
} from "./conditions.js";
import { BAIL, compileFast } from "./fast.js";

const facts = (
  args: Record<string, unknown>,
  over: Partial<ConditionFacts> = {},
): ConditionFacts => ({
  tool: "ledger.transfer",
  op: "write",
  domains: ["ledger", "bank"],
  args,
  run: { id: "r1", step: 2, attempt: 1 },
  env: "prod",
  ...over,
});

function outcome(src: string, f: ConditionFacts): boolean | string {
  try {
    return compileCondition(src).evaluate(f);
  } catch (e) {
    return e instanceof ConditionError ? `${e.kind}` : "THREW";
  }
}

describe("policy - conditions", () => {
  const ARGS = { amount: 15000, note: "hello", payouts: [1, 2, 3], nested: { k: 1 } };
  // The cases policies need, measured against both CEL libraries (docs/decisions/004-cel-js.md).
  const cases: [string, boolean | string][] = [
    ["args.amount > 10000", true], // a JSON number (double) against an int literal
    ["args.amount > 10000.0", true],
    ["args.amount == 15000", true],
    ["args.amount >= 5000 && args.amount < 20000", true],
    ['tool in ["ledger.transfer", "ledger.refund"]', true],
    ['"bank" in domains', true],
    ['tool.startsWith("ledger.")', true],
    ['tool.endsWith(".transfer")', true],
    ['args.note.contains("ell")', true],
    ["size(args.payouts) > 2", true],
    ["args.payouts.size() == 3", true],
    ["has(args.amount)", true],
    ["has(args.missing)", false],
    ["has(args.nested.k)", true],
    ['"k" in args.nested', true],
    ["int(args.amount) > 10000", true],
    ["double(run.step) >= 2.0", true],
    ['string(args.amount) == "15000"', true],
    ["args.payouts.exists(p, p > 2)", true],
    ["args.payouts.all(p, p > 0)", true],
    ["args.payouts.filter(p, p > 1).size() == 2", true],
    ['env == "prod" ? args.amount > 1.0 : false', true],
    // Evaluation failures: never silently false.
    ["args.missing > 1", "evaluation"],
    ["args.note > 5", "evaluation"],
    ["args.note", "not_bool"],
    ["false && args.missing > 1", false], // CEL's commutative && absorbs the error
    ["args.missing > 1 || true", true],
  ];
  for (const [src, want] of cases) {
    it(`policy - ${src} -> ${String(want)}`, () => {
      expect(outcome(src, facts(ARGS))).toBe(want);
    });
  }

  it("policy - functions off the list are refused by name", () => {
    for (const [src, fn] of [
      ['args.note.matches("(a+)+$")', "matches"],
      ['timestamp("2020-01-01T00:00:00Z") > timestamp("2019-01-01T00:00:00Z")', "timestamp"],
      ['duration("1s") > duration("0s")', "duration"],
      ["dyn(tool) == 1", "dyn"],
      ["type(tool) == string", "type"],
      ["nosuch(tool)", "nosuch"],
      ["tool.nosuch()", "nosuch"],
      ['bytes("a") == bytes("a")', "bytes"],
    ] as const) {
      let err: unknown;
      try {
        compileCondition(src);
      } catch (e) {
        err = e;
      }
      expect(err, src).toBeInstanceOf(ConditionError);
      expect((err as ConditionError).kind, src).toBe("function");
      expect((err as ConditionError).functionName, src).toBe(fn);
    }
  });

  it("policy - every listed function is usable", () => {
    const uses: Record<string, string> = {
      size: "size(tool) > 0",
      has: "has(args.amount)",
      startsWith: 'tool.startsWith("l")',
      endsWith: 'tool.endsWith("r")',
      contains: 'tool.contains("x")',
      int: "int(args.amount) > 1",
      uint: "uint(args.amount) > 1u",
      double: "double(args.amount) > 1.0",
      string: 'string(args.amount) != ""',
      bool: 'bool("true")',
      exists: 'domains.exists(d, d == "bank")',
      all: "domains.all(d, size(d) > 0)",
      exists_one: 'domains.exists_one(d, d == "bank")',
      filter: 'domains.filter(d, d == "bank").size() == 1',
      map: 'domains.map(d, d + "!").size() == 2',
    };
    expect(Object.keys(uses).sort()).toEqual([...ALLOWED_FUNCTIONS].sort());
    for (const src of Object.values(uses))
      expect(typeof compileCondition(src).evaluate(facts(ARGS)), src).toBe("boolean");
  });

  it("policy - specialising a condition to a tool agrees with evaluating all of it", () => {
    const c = compileCondition('tool == "ledger.transfer" && op != "read" && args.amount > 100.0');
    const stat = { tool: "ledger.transfer", op: "write", domains: ["ledger"], env: "prod" };
    expect(c.specialize?.({ ...stat, tool: "ledger.refund" })).toBe(false);
    const residual = c.specialize?.(stat);
    expect(typeof residual).toBe("function");
    expect(
      compileCondition('op == "delete" && "ledger" in domains').specialize?.({
        ...stat,
        op: "delete",
      }),
    ).toBe(true);
    // A static term that fails is left to decision time, where the failure is recorded.
    const failing = compileCondition("int(tool) > 1 && args.amount > 1.0");
    expect(failing.specialize?.(stat)).toBeTypeOf("function");
  });
});

const celEnv = (() => {
  const e = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
  });
  for (const [name, type] of Object.entries(CONDITION_VARIABLES)) e.registerVariable(name, type);
  return e;
})();

/** Raise for a long soak: TRIAS_FC_RUNS=200000 pnpm exec vitest run shared/policy */
const RUNS = Number(process.env["TRIAS_FC_RUNS"] ?? 4000);

const KEYS = ["a", "b", "n", "s", "l", "m", "__proto__", "constructor"] as const;
const prim = fc.oneof(
  fc.integer({ min: -5, max: 5 }),
  fc.double({ noDefaultInfinity: false }),
  fc.bigInt({ min: -5n, max: 5n }),
  fc.constantFrom("", "a", "b", "ab", "é", "😀", "\uffff"),
  fc.boolean(),
  fc.constant(null),
);
const value: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 4, arbitrary: prim },
  { weight: 1, arbitrary: fc.array(prim, { maxLength: 3 }) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.tuple(fc.constantFrom(...KEYS), prim), { maxLength: 3 })
      .map((kv) => Object.fromEntries(kv)),
  },
  {
    weight: 1,
    arbitrary: fc.constantFrom(
      undefined,
      new Map([["a", 1]]),
      new Date(0),
      Object.create(null) as unknown,
      new Set([1]),
    ),
  },
);
const nested = fc.oneof(
  { weight: 6, arbitrary: value },
  { weight: 1, arbitrary: fc.array(value, { maxLength: 3 }) },
  {
    weight: 1,
    arbitrary: fc
      .array(fc.tuple(fc.constantFrom(...KEYS), value), { maxLength: 3 })
      .map((kv) => Object.fromEntries(kv)),
  },
);
const argsArb = fc
  .array(fc.tuple(fc.constantFrom(...KEYS), nested), { maxLength: 5 })
  .map((kv) => Object.fromEntries(kv) as Record<string, unknown>);

const { expr } = fc.letrec<{ expr: string; atom: string; lit: string }>((tie) => ({
  lit: fc.constantFrom(
    "0",
    "1",
    "5",
    "-3",
    "1.5",
    "-0.5",
    '"a"',
    '"ab"',
    '""',
    "true",
    "false",
    "null",
    "1u",
  ),
  atom: fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom(...KEYS).map((k) => `args.${k}`) },
    { weight: 1, arbitrary: fc.constantFrom(...KEYS).map((k) => `args["${k}"]`) },
    {
      weight: 1,
      arbitrary: fc.constantFrom(
        "args.m.a",
        "run.step",
        "run.a",
        "tool",
        "op",
        "env",
        "domains",
        "args",
      ),
    },
    { weight: 3, arbitrary: tie("lit") },
    { weight: 1, arbitrary: fc.constantFrom(...KEYS).map((k) => `size(args.${k})`) },
    { weight: 1, arbitrary: fc.constantFrom(...KEYS).map((k) => `args.${k}.size()`) },
    { weight: 1, arbitrary: fc.tuple(tie("lit"), tie("lit")).map(([a, b]) => `[${a}, ${b}]`) },
  ),
  expr: fc.oneof(
    { depthSize: "small", withCrossShrink: true },
    {
      weight: 4,
      arbitrary: fc
        .tuple(tie("atom"), fc.constantFrom("==", "!=", "<", "<=", ">", ">=", "in"), tie("atom"))
        .map(([a, op, b]) => `${a} ${op} ${b}`),
    },
    { weight: 1, arbitrary: fc.constantFrom(...KEYS).map((k) => `has(args.${k})`) },
    { weight: 1, arbitrary: fc.constantFrom(...KEYS).map((k) => `has(args.m.${k})`) },
    {
      weight: 1,
      arbitrary: fc
        .tuple(
          fc.constantFrom(...KEYS),
          fc.constantFrom("startsWith", "endsWith", "contains"),
          tie("atom"),
        )
        .map(([k, m, a]) => `args.${k}.${m}(${a})`),
    },
    { weight: 1, arbitrary: tie("atom") },
    { weight: 1, arbitrary: tie("expr").map((e) => `!(${e})`) },
    {
      weight: 2,
      arbitrary: fc
        .tuple(tie("expr"), fc.constantFrom("&&", "||"), tie("expr"))
        .map(([a, op, b]) => `(${a}) ${op} (${b})`),
    },
    {
      weight: 1,
      arbitrary: fc
        .tuple(tie("expr"), tie("expr"), tie("expr"))
        .map(([a, b, c]) => `(${a}) ? (${b}) : (${c})`),
    },
  ),
}));

describe("policy - fast path", () => {
  it("policy - wherever the fast path answers, the CEL engine gives the same answer", () => {
    let answered = 0;
    let total = 0;
    fc.assert(
      fc.property(expr, argsArb, argsArb, (src, args, run) => {
        let program: ReturnType<typeof celEnv.parse>;
        try {
          program = celEnv.parse(src);
        } catch {
          return;
        }
        if (!program.check().valid) return;
        const fast = compileFast(program.ast);
        if (!fast) return;
        total++;
        const f = facts(args, { run });
        let got: unknown;
        try {
          got = fast(f);
        } catch (e) {
          expect(e).toBe(BAIL);
          return;
        }
        answered++;
        let want: unknown;
        try {
          want = program(f);
        } catch (e) {
          want = `engine error: ${(e as Error).message.split("\n")[0]}`;
        }
        // Non-bool results are never used (they fall back); compare only what decides.
        if (typeof got === "boolean" || typeof want === "boolean") expect(got, src).toBe(want);
      }),
      { numRuns: RUNS },
    );
    // The property is not vacuous: many conditions compile to the fast path, and a good share of random steps are answered on it.
    expect(total).toBeGreaterThan(500);
    expect(answered).toBeGreaterThan(total * 0.08);
  });

  it("policy - a compiled condition gives the engine's answer or the engine's error", () => {
    fc.assert(
      fc.property(expr, argsArb, (src, args) => {
        let program: ReturnType<typeof celEnv.parse>;
        try {
          program = celEnv.parse(src);
        } catch {
          return;
        }
        const checked = program.check();
        if (!checked.valid || (checked.type !== "bool" && checked.type !== "dyn")) return;
        let cond;
        try {
          cond = compileCondition(src);
        } catch {
          return; // refused for another reason (length, functions): fine
        }
        const f = facts(args);
        let want: boolean | "error";
        try {
          const v: unknown = program(f);
          want = typeof v === "boolean" ? v : "error";
        } catch {
          want = "error";
        }
        let got: boolean | "error";
        try {
          got = cond.evaluate(f);
        } catch (e) {
          expect(e).toBeInstanceOf(ConditionError);
          got = "error";
        }
        expect(got, src).toBe(want);
      }),
      { numRuns: RUNS },
    );
  });
});
