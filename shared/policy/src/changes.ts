import { canonicalBytes, type Tier } from "@trias/protocol";
import { decideTier, type StepFacts } from "./decide.js";
import { SAMPLE_ARGS } from "./explain.js";
import type { LoadedPolicy } from "./load.js";

/** One difference in the policy text itself: a rule, a threshold, a tier's quorum, a tool entry. */
export interface PolicyChange {
  change: "added" | "removed" | "changed";
  /** "rule <id>", "tool <name>", "threshold full", "tier full", "weight op", ... */
  what: string;
  before: unknown;
  after: unknown;
  /** Tools whose sample steps this change can touch, sorted. */
  tools: string[];
}

const same = (x: unknown, y: unknown) =>
  Buffer.from(canonicalBytes(x ?? null)).equals(Buffer.from(canonicalBytes(y ?? null)));

/** Every sample step of every tool in either catalogue, decided under `p`. */
function samples(a: LoadedPolicy, b: LoadedPolicy) {
  const tools = [...new Set([...Object.keys(a.doc.tools), ...Object.keys(b.doc.tools)])].sort();
  return tools.flatMap((tool) =>
    (Object.hasOwn(SAMPLE_ARGS, tool) ? (SAMPLE_ARGS[tool] ?? [{}]) : [{}]).map((args) => ({
      tool,
      facts: { tool, args, run: { id: "diff", step: 1, attempt: 1 } } satisfies StepFacts,
    })),
  );
}

/**
 * What changed between two policies, rule by rule and setting by setting, each with the
 * tools it affects: for a rule, the tools whose sample steps it matches under either
 * policy or that its condition names; for a tier's parameters, the tools whose sample
 * steps land on that tier; for thresholds, weights and operations, the tools whose sample
 * outcome differs.
 */
export function policyChanges(a: LoadedPolicy, b: LoadedPolicy): PolicyChange[] {
  const out: PolicyChange[] = [];
  const steps = samples(a, b);
  const decided = steps.map((s) => ({
    tool: s.tool,
    da: decideTier(a, s.facts),
    db: decideTier(b, s.facts),
  }));
  const toolsWhere = (pred: (d: (typeof decided)[number]) => boolean) =>
    [...new Set(decided.filter(pred).map((d) => d.tool))].sort();
  const outcomeDiffers = toolsWhere(
    (d) =>
      d.da.tier !== d.db.tier ||
      (d.da.denied === null) !== (d.db.denied === null) ||
      !same(d.da.requires, d.db.requires),
  );
  const push = (what: string, before: unknown, after: unknown, tools: string[]) => {
    if (same(before, after)) return;
    const change = before === undefined ? "added" : after === undefined ? "removed" : "changed";
    out.push({ change, what, before, after, tools });
  };

  const rulesA = new Map(a.doc.rules.map((r) => [r.id, r]));
  const rulesB = new Map(b.doc.rules.map((r) => [r.id, r]));
  for (const id of new Set([...rulesA.keys(), ...rulesB.keys()])) {
    const ra = rulesA.get(id);
    const rb = rulesB.get(id);
    const named = [...new Set([...Object.keys(a.doc.tools), ...Object.keys(b.doc.tools)])].filter(
      (t) => `${ra?.when ?? ""} ${rb?.when ?? ""}`.includes(`"${t}"`),
    );
    const matches = toolsWhere(
      (d) => d.da.matched.some((m) => m.id === id) || d.db.matched.some((m) => m.id === id),
    );
    push(`rule ${id}`, ra, rb, [...new Set([...matches, ...named])].sort());
  }

  for (const t of ["standard", "full"] as const)
    push(`threshold ${t}`, a.doc.risk.thresholds[t], b.doc.risk.thresholds[t], outcomeDiffers);
  for (const w of ["op", "objects", "crossDomain", "historicalFailure"] as const)
    push(`weight ${w}`, a.doc.risk.weights[w], b.doc.risk.weights[w], outcomeDiffers);
  for (const op of new Set([
    ...Object.keys(a.doc.risk.operations),
    ...Object.keys(b.doc.risk.operations),
  ]))
    push(
      `operation ${op}`,
      a.doc.risk.operations[op as keyof typeof a.doc.risk.operations],
      b.doc.risk.operations[op as keyof typeof b.doc.risk.operations],
      outcomeDiffers,
    );
  for (const tier of ["light", "standard", "full"] as const satisfies readonly Tier[]) {
    const pa = a.doc.tiers[tier];
    const pb = b.doc.tiers[tier];
    const onTier = toolsWhere((d) => d.da.tier === tier || d.db.tier === tier);
    for (const k of Object.keys({ ...pa, ...pb }) as (keyof typeof pa)[])
      push(`tier ${tier} ${k}`, pa[k], pb[k], onTier);
  }
  for (const tool of new Set([...Object.keys(a.doc.tools), ...Object.keys(b.doc.tools)]))
    push(`tool ${tool}`, a.doc.tools[tool], b.doc.tools[tool], [tool]);
  push("unknownTools", a.doc.unknownTools, b.doc.unknownTools, []);
  push("escalation", a.doc.escalation, b.doc.escalation, []);
  push("budgets", a.doc.budgets, b.doc.budgets, []);
  return out;
}

function short(v: unknown): string {
  return JSON.stringify(v) ?? "(none)";
}

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === "object" && v !== null && !Array.isArray(v);

/** For two objects, only the fields that differ; otherwise before -> after. */
function fieldDiff(before: unknown, after: unknown): string {
  if (!isRecord(before) || !isRecord(after)) return `${short(before)} -> ${short(after)}`;
  return [...new Set([...Object.keys(before), ...Object.keys(after)])]
    .filter((k) => !same(before[k], after[k]))
    .map((k) => `${k} ${short(before[k])} -> ${short(after[k])}`)
    .join("; ");
}

/** One line per change: `+` added, `-` removed, `~` changed, then the tools it affects. */
export function renderPolicyChanges(changes: readonly PolicyChange[]): string[] {
  if (changes.length === 0) return ["no rule, threshold, quorum or tool entry differs"];
  return changes.map((c) => {
    const sign = c.change === "added" ? "+" : c.change === "removed" ? "-" : "~";
    const body =
      c.change === "added"
        ? short(c.after)
        : c.change === "removed"
          ? short(c.before)
          : fieldDiff(c.before, c.after);
    return `${sign} ${c.what}: ${body}${c.tools.length ? `  (affects ${c.tools.join(", ")})` : ""}`;
  });
}
