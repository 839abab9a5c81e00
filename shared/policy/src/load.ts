import { readFileSync } from "node:fs";
import {
  LineCounter,
  parseDocument,
  isNode,
  isMap,
  isScalar,
  type Node,
  type Document,
} from "yaml";
import { z } from "zod";
import { ValidationError, canonicalBytes, sha256Hex } from "@trias/protocol";
import { PolicyDocument, type ArgCheck } from "./schema.js";
import { compileCondition, ConditionError, type CompiledCondition } from "./conditions.js";

export interface PolicyProblem {
  file: string;
  line: number;
  column: number;
  path: string;
  message: string;
}

/** A policy refused at load: every problem, each with file, line and reason. */
export class PolicyError extends ValidationError {
  readonly problems: readonly PolicyProblem[];
  constructor(problems: PolicyProblem[]) {
    super(
      "policy_invalid",
      problems
        .map((p) => `${p.file}:${p.line}:${p.column}: ${p.path ? p.path + ": " : ""}${p.message}`)
        .join("\n"),
    );
    this.problems = problems;
  }
}

export interface CompiledArgCheck {
  check: ArgCheck;
  condition: CompiledCondition;
}

export interface LoadedPolicy {
  file: string;
  doc: PolicyDocument;
  /** SHA-256 over the canonical encoding of the validated document. */
  digest: string;
  conditions: ReadonlyMap<string, CompiledCondition>;
  /** Each tool's compiled argument checks (absent for a policy built in memory). */
  argChecks?: ReadonlyMap<string, readonly CompiledArgCheck[]>;
  /** Where each `tools:` entry is in the file (absent for a policy built in memory). */
  toolLines?: ReadonlyMap<string, { line: number; column: number }>;
}

export function loadPolicy(file: string): LoadedPolicy {
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new PolicyError([
      {
        file,
        line: 0,
        column: 0,
        path: "",
        message: `cannot read policy file: ${(e as Error).message}`,
      },
    ]);
  }
  return parsePolicy(text, file);
}

type Pos = { line: number; column: number };

/**
 * Where, in the file, a position inside a condition lies. Exact for single-line and
 * literal block (`|`) conditions; for folded or multi-line quoted ones, where YAML has
 * rewritten the line breaks, it falls back to the start of the condition.
 */
function conditionPos(
  text: string,
  lc: LineCounter,
  node: Node | undefined,
  source: string,
  offset: number | undefined,
): Pos {
  const start = node?.range?.[0] ?? 0;
  const startPos = lc.linePos(start);
  const base = { line: startPos.line, column: startPos.col };
  if (offset === undefined || !isScalar(node)) return base;
  const before = source.slice(0, Math.max(0, Math.min(offset, source.length)));
  if (
    !source.includes("\n") &&
    (node.type === "PLAIN" || node.type === "QUOTE_DOUBLE" || node.type === "QUOTE_SINGLE")
  ) {
    return {
      line: base.line,
      column: base.column + (node.type === "PLAIN" ? 0 : 1) + before.length,
    };
  }
  if (node.type === "BLOCK_LITERAL") {
    const k = before.split("\n").length - 1;
    const line = base.line + 1 + k;
    // The block's indentation is set by its first line; deeper lines keep the rest in the value.
    const firstText = text.split("\n")[base.line] ?? "";
    const indent = firstText.length - firstText.trimStart().length;
    return { line, column: indent + 1 + (before.length - (before.lastIndexOf("\n") + 1)) };
  }
  return base;
}

/** A parsed YAML document validated by a schema, with the means to point back into the file. */
export interface ParsedYaml<T> {
  value: T;
  /** Position of the node at `path` (or its nearest existing parent). */
  posOf: (path: readonly PropertyKey[]) => { line: number; column: number };
  /** Position of a map key (a missing key falls back to its parent). */
  keyPosOf: (path: readonly PropertyKey[], key: string) => { line: number; column: number };
  /** The node at `path` or its nearest existing parent. */
  nodeAt: (path: readonly PropertyKey[]) => Node | undefined;
  lineCounter: LineCounter;
}

/**
 * Parse YAML and validate it with `schema`; every problem carries file, line and column.
 * `fail` builds the error thrown for the problems (each file kind has its own error code).
 * Policies and the project configuration (trias.config.yaml) report errors the same way.
 */
export function parseYamlAs<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
  fail: (problems: PolicyProblem[]) => Error,
): ParsedYaml<z.output<S>> {
  const lc = new LineCounter();
  const at = (offset: number | undefined): Pos => {
    const p = lc.linePos(offset ?? 0);
    return { line: p.line, column: p.col };
  };
  let doc: Document.Parsed;
  try {
    doc = parseDocument(text, { lineCounter: lc, prettyErrors: false, uniqueKeys: true });
  } catch (e) {
    throw fail([wholeDocumentProblem(file, e)]);
  }
  if (doc.errors.length > 0) {
    // After the first YAML error the parser mostly reports its own confusion, token by
    // token; the first one is the one to fix.
    const e = doc.errors[0]!;
    const more =
      doc.errors.length > 1
        ? ` (${doc.errors.length - 1} more error(s) follow from it or after it)`
        : "";
    throw fail([
      {
        file,
        ...at(e.pos[0]),
        path: "",
        message: `YAML: ${e.message.split("\n")[0] || e.code}${more}`,
      },
    ]);
  }
  const nodeAt = (path: readonly PropertyKey[]): Node | undefined => {
    // Walk up the path until a node exists (a missing key is reported on its parent).
    for (let n = path.length; n >= 0; n--) {
      try {
        const node: unknown = doc.getIn(path.slice(0, n) as unknown[], true);
        if (isNode(node) && node.range) return node;
      } catch {
        // A path through a scalar: keep walking up.
      }
    }
    return undefined;
  };
  /** An unknown key is reported on the key itself, not on the map that holds it. */
  const keyAt = (path: readonly PropertyKey[], key: string): Node | undefined => {
    const parent = nodeAt(path);
    if (isMap(parent)) {
      for (const pair of parent.items) {
        if (isScalar(pair.key) && String(pair.key.value) === key && pair.key.range) return pair.key;
      }
    }
    return parent;
  };
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (e) {
    // Alias bombs and other documents that cannot become plain data.
    throw fail([wholeDocumentProblem(file, e)]);
  }
  const r = schema.safeParse(raw);
  if (!r.success) {
    throw fail(
      r.error.issues.map((i) => {
        if (i.code === "unrecognized_keys") {
          const node = keyAt(i.path, i.keys[0] ?? "");
          return {
            file,
            ...at(node?.range?.[0]),
            path: [...i.path, ...i.keys.slice(0, 1)].join("."),
            message: `${i.message}`,
          };
        }
        const node = nodeAt(i.path);
        return { file, ...at(node?.range?.[0]), path: i.path.join("."), message: i.message };
      }),
    );
  }
  return {
    value: r.data,
    posOf: (path) => at(nodeAt(path)?.range?.[0]),
    keyPosOf: (path, key) => at(keyAt(path, key)?.range?.[0]),
    nodeAt,
    lineCounter: lc,
  };
}

export function parsePolicy(text: string, file = "<policy>"): LoadedPolicy {
  const parsed = parseYamlAs(text, file, PolicyDocument, (p) => new PolicyError(p));
  const lc = parsed.lineCounter;
  const at = (offset: number | undefined): Pos => {
    const p = lc.linePos(offset ?? 0);
    return { line: p.line, column: p.col };
  };
  const nodeAt = parsed.nodeAt;
  const policy = parsed.value;
  const problems: PolicyProblem[] = [];
  const conditions = new Map<string, CompiledCondition>();
  const seen = new Map<string, number>();
  policy.rules.forEach((rule, idx) => {
    const first = seen.get(rule.id);
    if (first !== undefined) {
      const node = nodeAt(["rules", idx, "id"]);
      problems.push({
        file,
        ...at(node?.range?.[0]),
        path: `rules.${idx}.id`,
        message: `duplicate rule id "${rule.id}" (first used by rules.${first})`,
      });
      return;
    }
    seen.set(rule.id, idx);
    try {
      conditions.set(rule.id, compileCondition(rule.when));
    } catch (e) {
      const node = nodeAt(["rules", idx, "when"]);
      const ce = e instanceof ConditionError ? e : undefined;
      const msg = ce ? ce.message : String((e as Error)?.message ?? e);
      problems.push({
        file,
        ...conditionPos(text, lc, node, rule.when, ce?.offset),
        path: `rules.${idx}.when`,
        message: `rule "${rule.id}": ${msg}`,
      });
    }
  });
  const argChecks = new Map<string, CompiledArgCheck[]>();
  for (const [tool, entry] of Object.entries(policy.tools)) {
    const list: CompiledArgCheck[] = [];
    (entry.checks ?? []).forEach((check, idx) => {
      try {
        list.push({ check, condition: compileCondition(check.when) });
      } catch (e) {
        const node = nodeAt(["tools", tool, "checks", idx, "when"]);
        const ce = e instanceof ConditionError ? e : undefined;
        problems.push({
          file,
          ...conditionPos(text, lc, node, check.when, ce?.offset),
          path: `tools.${tool}.checks.${idx}.when`,
          message: `check "${check.id}": ${ce ? ce.message : String((e as Error)?.message ?? e)}`,
        });
      }
    });
    if (list.length > 0) argChecks.set(tool, list);
  }
  for (const [tier, params] of Object.entries(policy.tiers)) {
    if (params.reviewers > 0 && params.strategies.length === 0) {
      const node = nodeAt(["tiers", tier, "strategies"]);
      problems.push({
        file,
        ...at(node?.range?.[0]),
        path: `tiers.${tier}.strategies`,
        message: "a tier with reviewers needs at least one strategy",
      });
    }
  }
  if (problems.length > 0) throw new PolicyError(problems);
  const toolLines = new Map<string, Pos>();
  for (const name of Object.keys(policy.tools))
    toolLines.set(name, parsed.keyPosOf(["tools"], name));
  return { file, doc: policy, digest: policyDigest(policy), conditions, toolLines, argChecks };
}

export function policyDigest(doc: PolicyDocument): string {
  return sha256Hex(canonicalBytes(doc));
}

/** JSON Schema of the policy file, for editor completion. */
export function policyJsonSchema(): unknown {
  return z.toJSONSchema(PolicyDocument, {
    target: "draft-2020-12",
    io: "input",
    unrepresentable: "any",
  });
}

/** A YAML failure that has no position in the file (the parser gave up, an alias bomb). */
function wholeDocumentProblem(file: string, e: unknown): PolicyProblem {
  return {
    file,
    line: 1,
    column: 1,
    path: "",
    message: `YAML: ${String((e as Error)?.message ?? e).split("\n")[0]}`,
  };
}
