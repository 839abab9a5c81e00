/**
 * Measures the two CEL libraries on the cases policy conditions need, and their speed on a
 * typical rule. Run: `node bench/dist/cel-compare.js`. The figures in docs/decisions/004-cel-js.md
 * come from this script.
 */
import { Environment } from "@marcbachmann/cel-js";
import { celEnv, CelScalar, isCelError, listType, mapType, parse, plan } from "@bufbuild/cel";
import { CONDITION_VARIABLES, compileCondition, ConditionError } from "@trias/policy";

type Outcome =
  { ok: true; value: unknown } | { ok: false; stage: "parse" | "check" | "eval"; error: string };
interface Engine {
  name: string;
  /** Parse and (where the engine can) type-check; returns a runner or the failing stage. */
  compile(src: string): { run(ctx: Ctx): Outcome } | Outcome;
}
interface Ctx {
  tool: string;
  op: string;
  domains: string[];
  args: Record<string, unknown>;
  run: Record<string, unknown>;
  env: string;
}

const msg = (e: unknown) => String((e as Error)?.message ?? e).split("\n")[0] ?? "";

const marc: Engine = (() => {
  const env = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
  });
  for (const [n, t] of Object.entries(CONDITION_VARIABLES)) env.registerVariable(n, t);
  return {
    name: "@marcbachmann/cel-js",
    compile(src) {
      let p: ReturnType<typeof env.parse>;
      try {
        p = env.parse(src);
      } catch (e) {
        return { ok: false, stage: "parse", error: msg(e) };
      }
      const c = p.check();
      if (!c.valid) return { ok: false, stage: "check", error: msg(c.error) };
      return {
        run(ctx) {
          try {
            return { ok: true, value: p(ctx) };
          } catch (e) {
            return { ok: false, stage: "eval", error: msg(e) };
          }
        },
      };
    },
  };
})();

const buf: Engine = (() => {
  const env = celEnv({
    variables: {
      tool: CelScalar.STRING,
      op: CelScalar.STRING,
      domains: listType(CelScalar.STRING),
      args: mapType(CelScalar.STRING, CelScalar.DYN),
      run: mapType(CelScalar.STRING, CelScalar.DYN),
      env: CelScalar.STRING,
    },
  });
  return {
    name: "@bufbuild/cel",
    compile(src) {
      let fn: (ctx: never) => unknown;
      try {
        // The package exports no type checker (0.6.x), so parse + plan is all a load can do.
        fn = plan(env, parse(src));
      } catch (e) {
        return { ok: false, stage: "parse", error: msg(e) };
      }
      return {
        run(ctx) {
          try {
            const v = fn(ctx as never);
            return isCelError(v)
              ? { ok: false, stage: "eval", error: msg(v) }
              : { ok: true, value: v };
          } catch (e) {
            return { ok: false, stage: "eval", error: msg(e) };
          }
        },
      };
    },
  };
})();

const ctx: Ctx = {
  tool: "ledger.transfer",
  op: "write",
  domains: ["ledger", "bank"],
  args: { amount: 15000, from: "acc-1", to: "acc-2", payouts: [1, 2, 3], note: "hi" },
  run: { id: "r1", step: 1, attempt: 1 },
  env: "prod",
};

/** Each case: the value wanted, or `{ refuse: stage }`, the stage that must refuse it. */
const CASES: [string, unknown][] = [
  ["args.amount > 10000", true], // double arg vs int literal
  ["args.amount > 10000.0", true],
  ["args.amount == 15000", true], // heterogeneous numeric equality
  ["args.amount >= 5000 && args.amount < 20000", true],
  ['tool in ["ledger.transfer", "ledger.refund"]', true],
  ['"bank" in domains', true],
  ['tool.startsWith("ledger.")', true],
  ['tool.endsWith(".transfer")', true],
  ['args.note.contains("h")', true],
  ["size(args.payouts) > 2", true],
  ["size(domains) > 1", true],
  ["has(args.amount)", true],
  ["has(args.missing)", false],
  ["int(args.amount) > 10000", true],
  ["double(run.step) >= 1.0", true],
  ['string(args.amount) == "15000"', true],
  ["args.missing > 1", { refuse: "eval" }], // missing key: an evaluation error, never false
  ["args.note > 5", { refuse: "eval" }], // dyn string vs int
  ["tool > 5", { refuse: "check" }],
  ["tool == 1", { refuse: "check" }],
  ["size(tool) + 'x' == 'y'", { refuse: "check" }],
  ["nosuchfn(tool)", { refuse: "check" }],
  ["tool.nosuchmethod()", { refuse: "check" }],
  ["undeclared == 1", { refuse: "check" }],
  ['tool == "a" &&', { refuse: "parse" }],
  ['tool === "a"', { refuse: "parse" }],
  ['tool == "a" @ 1', { refuse: "parse" }],
];

function correctness(e: Engine): { pass: number; total: number; failures: string[] } {
  const failures: string[] = [];
  for (const [src, want] of CASES) {
    const c = e.compile(src);
    const out: Outcome = "run" in c ? c.run(ctx) : c;
    const refuse =
      typeof want === "object" && want !== null && "refuse" in want
        ? (want as { refuse: string }).refuse
        : null;
    let good: boolean;
    if (refuse)
      good =
        !out.ok &&
        (out.stage === refuse ||
          (refuse === "check" &&
            out.stage === "parse" &&
            /unknown|undeclared|found no/i.test(out.error)));
    else good = out.ok && out.value === want;
    if (!good)
      failures.push(
        `${src}: want ${refuse ? `refused at ${refuse}` : String(want)}, got ${out.ok ? String(out.value) : `${out.stage} error: ${out.error}`}`,
      );
  }
  return { pass: CASES.length - failures.length, total: CASES.length, failures };
}

function speed(e: Engine, src: string, iters: number): number {
  const c = e.compile(src);
  if (!("run" in c)) throw new Error(`${e.name} cannot compile ${src}`);
  for (let i = 0; i < 20_000; i++) c.run(ctx);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < iters; i++) c.run(ctx);
  const ns = Number(process.hrtime.bigint() - t0);
  return Math.round((iters / ns) * 1e9);
}

/** What policies actually run: cel-js behind the allow-list, with the closure fast path. */
const trias: Engine = {
  name: "Trias conditions (cel-js + fast path)",
  compile(src) {
    let c: ReturnType<typeof compileCondition>;
    try {
      c = compileCondition(src);
    } catch (e) {
      return {
        ok: false,
        stage: e instanceof ConditionError && e.kind === "syntax" ? "parse" : "check",
        error: msg(e),
      };
    }
    return {
      run(ctx) {
        try {
          return { ok: true, value: c.evaluate(ctx) };
        } catch (e) {
          return { ok: false, stage: "eval", error: msg(e) };
        }
      },
    };
  },
};

const TYPICAL = 'tool == "ledger.transfer" && args.amount > 10000.0';
const LIST = 'op in ["delete", "irreversible"] || size(domains) > 1';
for (const e of [marc, buf, trias]) {
  const r = correctness(e);
  console.log(`${e.name}: correctness ${r.pass}/${r.total}`);
  for (const f of r.failures) console.log(`  FAIL ${f}`);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < 200; i++) e.compile(`${TYPICAL} && run.step > ${i}`);
  console.log(
    `  compile: ${Math.round(Number(process.hrtime.bigint() - t0) / 200 / 1000)} us per condition`,
  );
  console.log(`  typical rule: ${speed(e, TYPICAL, 500_000).toLocaleString("en")} evals/s`);
  console.log(`  list rule:    ${speed(e, LIST, 500_000).toLocaleString("en")} evals/s`);
}
