import { Environment, serialize, type ASTNode } from "@marcbachmann/cel-js";
import { compileFast, withFallback } from "./fast.js";
import type { ConditionFacts } from "./facts.js";

export type { ConditionFacts } from "./facts.js";

/**
 * Rule conditions are CEL, compiled once when a policy loads and type-checked against the
 * facts a step exposes. CEL is not Turing complete and has no I/O, the engine builds no
 * code from text (no eval, no Function), and no custom functions are registered: a
 * condition can read these facts and nothing else.
 */
export const CONDITION_VARIABLES = {
  tool: "string",
  op: "string",
  domains: "list<string>",
  args: "map",
  run: "map",
  env: "string",
} as const;

/**
 * The only functions and macros a condition may call. Everything here is total over its
 * input and linear in it. Left out on purpose:
 * - `matches`: the engine runs it on JavaScript's backtracking RegExp, so a policy regex
 *   over proposer-controlled text is a ReDoS;
 * - `dyn`, `type`: they switch the type checker off, and with it load-time errors;
 * - timestamps, durations and their accessors: no rule needs time yet, and wall-clock
 *   facts would make tier decisions depend on when they were replayed.
 */
export const ALLOWED_FUNCTIONS: ReadonlySet<string> = new Set([
  "size",
  "has",
  "startsWith",
  "endsWith",
  "contains",
  "int",
  "uint",
  "double",
  "string",
  "bool",
  "exists",
  "all",
  "exists_one",
  "filter",
  "map",
]);

const COMPREHENSIONS: ReadonlySet<string> = new Set([
  "exists",
  "all",
  "exists_one",
  "filter",
  "map",
]);

/** Longer conditions belong in several rules; the cap also bounds load-time work on hostile files. */
export const MAX_CONDITION_LENGTH = 2000;

const celEnv = (() => {
  const e = new Environment({
    unlistedVariablesAreDyn: false,
    homogeneousAggregateLiterals: false,
    // Tighter than the engine's defaults: a policy condition is a line or two, and these
    // keep parsing of hostile text (deep nesting, huge literals) cheap and stack-safe.
    limits: {
      maxAstNodes: 1000,
      maxDepth: 32,
      maxListElements: 256,
      maxMapEntries: 256,
      maxCallArguments: 8,
    },
  });
  for (const [name, type] of Object.entries(CONDITION_VARIABLES)) e.registerVariable(name, type);
  return e;
})();

/** The facts that are fixed for a tool in a given policy, known before any step arrives. */
export type StaticFacts = Pick<ConditionFacts, "tool" | "op" | "domains" | "env">;
const STATIC_VARIABLES: ReadonlySet<string> = new Set(["tool", "op", "domains", "env"]);

/**
 * A condition specialised to one tool: `false` when it can never hold for that tool,
 * `true` when it always does, otherwise the evaluator to run per step.
 */
export type Specialized = boolean | ((facts: ConditionFacts) => boolean);

export interface CompiledCondition {
  source: string;
  /** Top-level variables the condition reads (`tool`, `args`, ...). */
  reads: ReadonlySet<string>;
  /** Throws when the condition cannot be evaluated on these facts (missing key, wrong type). */
  evaluate(facts: ConditionFacts): boolean;
  /**
   * Partial evaluation over the facts fixed per tool, done once per policy and tool.
   * A top-level `&&` term over those facts that is false makes the condition `false`
   * (CEL's `&&` is false if any side is, whatever errors the other raises); when all such
   * terms are true, only the remaining terms are evaluated per step. When a term fails,
   * the whole condition is kept, so the failure is met, and recorded, at decision time.
   */
  specialize?(facts: StaticFacts): Specialized;
}

export type ConditionErrorKind =
  | "syntax"
  | "type"
  | "function"
  | "not_bool"
  | "too_long"
  | "nested_comprehension"
  /** Raised at decision time, not load: a missing key, a value of the wrong type. */
  | "evaluation";

export class ConditionError extends Error {
  override readonly name = "ConditionError";
  readonly kind: ConditionErrorKind;
  /** 0-based offset of the offending text within the condition, when known. */
  readonly offset: number | undefined;
  /** 1-based column within the condition text, when the engine reports one. */
  readonly column: number | undefined;
  /** The refused function, for kind "function". */
  readonly functionName: string | undefined;
  constructor(kind: ConditionErrorKind, message: string, offset?: number, functionName?: string) {
    super(message);
    this.kind = kind;
    this.offset = offset;
    this.column = offset === undefined ? undefined : offset + 1;
    this.functionName = functionName;
  }
}

interface CelErrorLike {
  summary?: unknown;
  message?: unknown;
  range?: { start?: unknown };
}

function summaryOf(e: unknown): string {
  const x = (e ?? {}) as CelErrorLike;
  const s = typeof x.summary === "string" ? x.summary : String(x.message ?? e);
  return s.split("\n")[0] || "invalid condition";
}

function offsetOf(e: unknown): number | undefined {
  const start = ((e ?? {}) as CelErrorLike).range?.start;
  return typeof start === "number" ? start : undefined;
}

function childNodes(node: ASTNode): ASTNode[] {
  const out: ASTNode[] = [];
  const visit = (x: unknown, depth: number) => {
    if (x === null || typeof x !== "object" || depth > 2) return;
    if (Array.isArray(x)) for (const y of x) visit(y, depth + 1);
    else if ("op" in x && "args" in x) out.push(x as ASTNode);
  };
  if (node.op === "value" || node.op === "id") return out;
  visit(node.args, 0);
  return out;
}

/** Where a call's name is: a method's node starts at its receiver, so look past it. */
function nameOffset(node: ASTNode): number {
  if (node.op !== "rcall") return node.start;
  const [name, receiver] = node.args;
  const at = node.input.indexOf(name, receiver.end);
  return at >= 0 ? at : node.start;
}

/**
 * One pass over the tree: refuses functions off the list and comprehensions nested in
 * comprehensions (their cost is the product of list sizes the proposer controls), and
 * collects the variables read. Iterative, so a hostile tree cannot exhaust the stack.
 */
function inspect(root: ASTNode): Set<string> {
  const reads = new Set<string>();
  const stack: { node: ASTNode; inComprehension: boolean; bound: ReadonlySet<string> }[] = [
    { node: root, inComprehension: false, bound: new Set() },
  ];
  while (stack.length > 0) {
    const { node, inComprehension, bound } = stack.pop()!;
    if (node.op === "id") {
      const name = node.args;
      if (!bound.has(name)) reads.add(name);
      continue;
    }
    if (node.op === "call" || node.op === "rcall") {
      const name = (node.args as [string, ...unknown[]])[0];
      if (!ALLOWED_FUNCTIONS.has(name)) {
        throw new ConditionError(
          "function",
          `function "${name}" is not allowed in conditions (allowed: ${[...ALLOWED_FUNCTIONS].join(", ")})`,
          nameOffset(node),
          name,
        );
      }
      if (COMPREHENSIONS.has(name) && node.op === "rcall") {
        if (inComprehension) {
          throw new ConditionError(
            "nested_comprehension",
            `"${name}" inside another comprehension is not allowed: its cost would grow with the product of list sizes`,
            nameOffset(node),
            name,
          );
        }
        const [, receiver, params] = node.args;
        // The iteration variable shadows outer names only inside the comprehension's
        // own arguments; the receiver is read in the outer scope.
        const iterVar = params[0];
        const inner = iterVar?.op === "id" ? new Set([...bound, iterVar.args]) : bound;
        stack.push({ node: receiver, inComprehension, bound });
        for (const p of params.slice(1))
          stack.push({ node: p, inComprehension: true, bound: inner });
        continue;
      }
    }
    for (const child of childNodes(node)) stack.push({ node: child, inComprehension, bound });
  }
  return reads;
}

/** Parse, restrict and type-check; throws ConditionError with the reason and where it is. */
export function compileCondition(source: string): CompiledCondition {
  if (typeof source !== "string")
    throw new ConditionError("syntax", "a condition must be a string");
  if (source.length > MAX_CONDITION_LENGTH) {
    throw new ConditionError(
      "too_long",
      `a condition is at most ${MAX_CONDITION_LENGTH} characters, this one has ${source.length}`,
    );
  }
  let program: ReturnType<typeof celEnv.parse>;
  try {
    program = celEnv.parse(source);
  } catch (e) {
    throw new ConditionError("syntax", `syntax error: ${summaryOf(e)}`, offsetOf(e));
  }
  // Before the type check, so an unknown or banned function is named as such rather than
  // reported as a missing overload.
  const reads = inspect(program.ast);
  let checked: { valid: boolean; type?: string; error?: unknown };
  try {
    checked = program.check();
  } catch (e) {
    throw new ConditionError("type", `type error: ${summaryOf(e)}`, offsetOf(e));
  }
  if (!checked.valid)
    throw new ConditionError(
      "type",
      `type error: ${summaryOf(checked.error)}`,
      offsetOf(checked.error),
    );
  if (checked.type !== "bool" && checked.type !== "dyn") {
    throw new ConditionError(
      "not_bool",
      `a condition must be a bool, but this one is ${checked.type ?? "unknown"}`,
      0,
    );
  }
  const engine = (facts: ConditionFacts): boolean => {
    let v: unknown;
    try {
      v = program(facts);
    } catch (e) {
      throw new ConditionError("evaluation", summaryOf(e), offsetOf(e));
    }
    if (typeof v !== "boolean")
      throw new ConditionError("not_bool", `condition evaluated to ${typeof v}, not bool`);
    return v;
  };
  const fastAll = compileFast(program.ast);
  const evaluate = fastAll ? withFallback(fastAll, engine) : engine;
  const conjuncts: ASTNode[] = [];
  const split = (n: ASTNode) => {
    if (n.op === "&&") {
      split(n.args[0]);
      split(n.args[1]);
    } else conjuncts.push(n);
  };
  // Bounded by maxDepth, so the recursion is safe.
  split(program.ast);
  const staticParts: Program[] = [];
  const dynamicParts: ASTNode[] = [];
  for (const c of conjuncts) {
    if ([...inspect(c)].every((v) => STATIC_VARIABLES.has(v))) {
      const part = reparse(serialize(c));
      if (part) {
        staticParts.push(part);
        continue;
      }
    }
    dynamicParts.push(c);
  }
  let residual: ((facts: ConditionFacts) => boolean) | undefined;
  const residualFor = () => {
    if (residual) return residual;
    const rest =
      dynamicParts.length === conjuncts.length
        ? undefined
        : reparse(dynamicParts.map((c) => `(${serialize(c)})`).join(" && "));
    if (!rest) return (residual = evaluate);
    const restEngine = (facts: ConditionFacts): boolean => {
      let v: unknown;
      try {
        v = rest(facts);
      } catch (e) {
        throw new ConditionError("evaluation", summaryOf(e));
      }
      if (typeof v !== "boolean")
        throw new ConditionError("not_bool", `condition evaluated to ${typeof v}, not bool`);
      return v;
    };
    const fastRest = compileFast(rest.ast);
    return (residual = fastRest ? withFallback(fastRest, restEngine) : restEngine);
  };
  return {
    source,
    reads,
    evaluate,
    specialize(facts: StaticFacts): Specialized {
      let failed = false;
      for (const part of staticParts) {
        let v: unknown;
        try {
          v = part({ ...facts, args: {}, run: {} });
        } catch {
          failed = true;
          continue;
        }
        if (v === false) return false;
        if (v !== true) failed = true;
      }
      if (failed) return evaluate;
      if (dynamicParts.length === 0) return true;
      return residualFor();
    },
  };
}

type Program = ReturnType<typeof celEnv.parse>;

/** A sub-expression of a checked condition, compiled on its own; undefined if it will not stand alone. */
function reparse(text: string): Program | undefined {
  try {
    const p = celEnv.parse(text);
    // Checking also records the types, which spares the engine a check per evaluation.
    return p.check().valid ? p : undefined;
  } catch {
    return undefined;
  }
}
