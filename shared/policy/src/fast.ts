import type { ASTNode } from "@marcbachmann/cel-js";
import type { ConditionFacts } from "./facts.js";

/**
 * A fast path for the common condition shapes (field reads, comparisons, `in`, `has`,
 * `size`, string prefixes, logic), compiled from the checked CEL tree into closures: no
 * eval, no generated code. It only ever answers when the answer is certain on plain data
 * (primitives, plain objects and arrays); on anything else (an error, a missing key,
 * mixed types, a Map, NaN in an ordering) it bails out and the CEL engine answers, so its
 * error semantics are the engine's. A differential property test holds the two to the
 * same results.
 */

/**
 * Thrown when the fast path declines; never escapes `withFallback`. One instance, made
 * once, so declining costs no allocation and no stack capture.
 */
class Decline extends Error {
  override readonly name = "Decline";
}
export const BAIL: Error = new Decline("the fast path declines; the CEL engine decides");

type Val = string | number | bigint | boolean | null | readonly unknown[] | Record<string, unknown>;
type Fn = (f: ConditionFacts) => Val;

function bail(): never {
  throw BAIL;
}

/**
 * The engine types objects by their `constructor` property, so an object with its own
 * `constructor` key is not a map to it (it refuses the value). The fast path uses the
 * same test, so it never answers where the engine would refuse.
 */
function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const c = (v as { constructor?: unknown }).constructor;
  return c === Object || c === undefined;
}

function isList(v: unknown): v is readonly unknown[] {
  return (
    typeof v === "object" && v !== null && (v as { constructor?: unknown }).constructor === Array
  );
}

/** Values the fast path understands; everything else bails. */
function plain(v: unknown): Val {
  switch (typeof v) {
    case "string":
    case "boolean":
    case "bigint":
      return v;
    case "number":
      return v;
    case "object":
      if (v === null || isList(v) || isPlainObject(v)) return v;
      return bail();
    default:
      return bail();
  }
}

/**
 * Before an operator or function on a collection, the engine works out the collection's
 * element type from its first element, recursively, and refuses an element it cannot
 * type. The fast path declines wherever that chain holds anything unusual, `undefined`
 * included, which is at least as strict as the engine.
 */
function checkFirstChain(v: Val): void {
  let cur: unknown = v;
  for (let depth = 0; depth < 64; depth++) {
    if (isList(cur)) {
      if (cur.length === 0) return;
      cur = cur[0];
    } else if (isPlainObject(cur)) {
      let next: unknown = undefined;
      let found = false;
      for (const k in cur) {
        next = cur[k];
        found = true;
        break;
      }
      if (!found) return;
      cur = next;
    } else {
      plain(cur);
      return;
    }
  }
  bail();
}

function isNum(v: Val): v is number | bigint {
  return typeof v === "number" || typeof v === "bigint";
}

/** CEL equality on primitives of the same kind; any other pairing bails. */
function eq(a: Val, b: Val): boolean {
  if (isNum(a) && isNum(b)) return a == b; // mixed number/bigint compare exactly in JS
  if (typeof a === "string" && typeof b === "string") return a === b;
  if (typeof a === "boolean" && typeof b === "boolean") return a === b;
  if (a === null && b === null) return true;
  return bail();
}

function field(target: Val, key: string): Val {
  // "__proto__" can be an own key of parsed JSON; the engine's view of it is its own.
  if (!isPlainObject(target) || key === "__proto__" || !Object.hasOwn(target, key)) return bail();
  return plain(target[key]);
}

function bool(v: Val): boolean {
  return typeof v === "boolean" ? v : bail();
}

function str(v: Val): string {
  return typeof v === "string" ? v : bail();
}

function codePoints(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    // A surrogate pair is one code point, as CEL counts.
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) i++;
    }
    n++;
  }
  return n;
}

function order(op: string, a: Val, b: Val): boolean {
  const same =
    (isNum(a) && isNum(b) && !Number.isNaN(a) && !Number.isNaN(b)) ||
    (typeof a === "string" && typeof b === "string") ||
    (typeof a === "boolean" && typeof b === "boolean");
  if (!same) return bail();
  const x = a as number;
  const y = b as number;
  switch (op) {
    case "<":
      return x < y;
    case "<=":
      return x <= y;
    case ">":
      return x > y;
    default:
      return x >= y;
  }
}

/** Compiles the tree, or returns undefined when it uses anything outside the fast subset. */
export function compileFast(node: ASTNode): Fn | undefined {
  try {
    return build(node);
  } catch (e) {
    if (e === UNSUPPORTED) return undefined;
    throw e;
  }
}

/** Thrown while compiling a tree the fast path does not cover; caught in compileFast. */
const UNSUPPORTED: Error = new Decline("not in the fast subset");
function unsupported(): never {
  throw UNSUPPORTED;
}

function build(n: ASTNode): Fn {
  switch (n.op) {
    case "value": {
      const v = n.args;
      if (
        v === null ||
        typeof v === "string" ||
        typeof v === "number" ||
        typeof v === "bigint" ||
        typeof v === "boolean"
      )
        return () => v;
      return unsupported();
    }
    case "-_": {
      const inner = n.args;
      if (
        inner.op === "value" &&
        (typeof inner.args === "number" || typeof inner.args === "bigint")
      ) {
        const v = -inner.args;
        return () => v;
      }
      return unsupported();
    }
    case "id": {
      switch (n.args) {
        case "tool":
          return (f) => f.tool;
        case "op":
          return (f) => f.op;
        case "env":
          return (f) => f.env;
        case "domains":
          return (f) => plain(f.domains);
        case "args":
          return (f) => plain(f.args);
        case "run":
          return (f) => plain(f.run);
        default:
          return unsupported();
      }
    }
    case ".": {
      const [t, key] = n.args;
      const target = build(t);
      return (f) => field(target(f), key);
    }
    case "[]": {
      const [t, k] = n.args;
      if (k.op !== "value" || typeof k.args !== "string") return unsupported();
      const key = k.args;
      const target = build(t);
      return (f) => field(target(f), key);
    }
    case "&&": {
      const a = build(n.args[0]);
      const b = build(n.args[1]);
      return (f) => (bool(a(f)) ? bool(b(f)) : false);
    }
    case "||": {
      const a = build(n.args[0]);
      const b = build(n.args[1]);
      return (f) => (bool(a(f)) ? true : bool(b(f)));
    }
    case "!_": {
      const a = build(n.args);
      return (f) => !bool(a(f));
    }
    case "?:": {
      const [c, x, y] = n.args.map(build) as [Fn, Fn, Fn];
      return (f) => (bool(c(f)) ? x(f) : y(f));
    }
    case "==":
    case "!=": {
      const a = build(n.args[0]);
      const b = build(n.args[1]);
      return n.op === "==" ? (f) => eq(a(f), b(f)) : (f) => !eq(a(f), b(f));
    }
    case "<":
    case "<=":
    case ">":
    case ">=": {
      const op = n.op;
      const a = build(n.args[0]);
      const b = build(n.args[1]);
      return (f) => order(op, a(f), b(f));
    }
    case "in": {
      const a = build(n.args[0]);
      const b = build(n.args[1]);
      return (f) => {
        const x = a(f);
        // Only primitives are looked up; the engine would type a collection first.
        if (typeof x === "object" && x !== null) return bail();
        const coll = b(f);
        checkFirstChain(coll);
        if (isList(coll)) {
          for (const el of coll) if (eq(x, plain(el))) return true;
          return false;
        }
        if (isPlainObject(coll) && typeof x === "string" && x !== "__proto__")
          return Object.hasOwn(coll, x);
        return bail();
      };
    }
    case "call": {
      const [name, params] = n.args;
      if (name === "has" && params.length === 1 && params[0]?.op === ".") {
        const [t, key] = params[0].args;
        const target = build(t);
        return (f) => {
          const obj = target(f);
          if (!isPlainObject(obj) || key === "__proto__") return bail();
          if (!Object.hasOwn(obj, key)) return false;
          // The engine types the value it finds, and refuses one it cannot type.
          plain(obj[key]);
          return true;
        };
      }
      if (name === "size" && params.length === 1) return sizeOf(build(params[0]!));
      return unsupported();
    }
    case "rcall": {
      const [name, recv, params] = n.args;
      const r = build(recv);
      if (name === "size" && params.length === 0) return sizeOf(r);
      if (
        (name === "startsWith" || name === "endsWith" || name === "contains") &&
        params.length === 1
      ) {
        const p = build(params[0]!);
        if (name === "startsWith") return (f) => str(r(f)).startsWith(str(p(f)));
        if (name === "endsWith") return (f) => str(r(f)).endsWith(str(p(f)));
        return (f) => str(r(f)).includes(str(p(f)));
      }
      return unsupported();
    }
    case "list": {
      const items = n.args.map(build);
      if (n.args.every((i) => i.op === "value")) {
        const constant = items.map((i) => i(undefined as unknown as ConditionFacts));
        return () => constant;
      }
      return (f) => items.map((i) => i(f));
    }
    default:
      return unsupported();
  }
}

function sizeOf(x: Fn): Fn {
  return (f) => {
    const v = x(f);
    if (typeof v === "string") return BigInt(codePoints(v));
    checkFirstChain(v);
    if (isList(v)) return BigInt(v.length);
    if (isPlainObject(v)) return BigInt(Object.keys(v).length);
    return bail();
  };
}

/** The fast path where it answers, the engine where it declines. */
export function withFallback(
  fast: Fn,
  slow: (f: ConditionFacts) => boolean,
): (f: ConditionFacts) => boolean {
  return (f) => {
    let v: Val;
    try {
      v = fast(f);
    } catch {
      // BAIL, or anything unexpected: either way the engine decides.
      return slow(f);
    }
    return typeof v === "boolean" ? v : slow(f);
  };
}
