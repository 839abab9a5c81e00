import type { Tier } from "@trias/protocol";
import { decideTier, humanText, type StepFacts, type TierDecision } from "./decide.js";
import { rateLimitOf } from "./limits.js";
import type { LoadedPolicy } from "./load.js";
import type { ToolEntry } from "./schema.js";

/** "tool 60/min delay (max 300 s)": one tool's rate limit for the policy summary. */
function rateSummary(tool: string, e: ToolEntry): string {
  const l = rateLimitOf(e);
  if (!l) return tool;
  const rate = `${tool} ${l.calls}/${l.windowMs === 60_000 ? "min" : `${l.windowMs / 1000} s`}`;
  return l.onExceed === "deny" ? `${rate} deny` : `${rate} delay (max ${l.maxDelayMs / 1000} s)`;
}

/** A step as a person types it for `trias policy explain`: run coordinates are optional. */
export interface ExplainInput {
  tool: string;
  args?: Record<string, unknown>;
  run?: Partial<StepFacts["run"]>;
}

function toFacts(step: ExplainInput): StepFacts {
  return {
    tool: step.tool,
    args: step.args ?? {},
    run: { id: "explain", step: 1, attempt: 1, ...step.run },
  };
}

function shortDigest(d: string): string {
  return d.slice(0, 12);
}

/** Score terms, matched rules, tier and why, as lines for a terminal. */
export function explainStep(policy: LoadedPolicy, step: ExplainInput, floor?: Tier): string {
  const facts = toFacts(step);
  const d = decideTier(policy, facts, floor);
  const { doc } = policy;
  const lines: string[] = [];
  lines.push(`policy ${doc.environment} (${policy.file}, digest ${shortDigest(policy.digest)})`);
  lines.push(`step   ${facts.tool} ${JSON.stringify(facts.args)}`);
  const entry = Object.hasOwn(doc.tools, facts.tool) ? doc.tools[facts.tool] : undefined;
  if (entry) {
    const t = doc.risk.thresholds;
    const w = doc.risk.weights;
    lines.push(
      `score  ${d.score}  (standard >= ${t.standard}, full >= ${t.full}) -> ${d.scoreTier}`,
    );
    lines.push(
      `  op                 ${pad(d.terms.op)} = ${w.op} x ${doc.risk.operations[entry.op]} (${entry.op})`,
    );
    lines.push(
      `  objects            ${pad(d.terms.objects)} = ${w.objects} x min(1, ${d.objects ?? "?"} / ${doc.risk.objectsSaturateAt})${"countOf" in entry.objects ? ` (length of args.${entry.objects.countOf})` : ""}`,
    );
    lines.push(
      `  crossDomain        ${pad(d.terms.crossDomain)} = ${w.crossDomain} x ${entry.domains.length > 1 ? 1 : 0} (${entry.domains.join(", ")})`,
    );
    lines.push(
      `  historicalFailure  ${pad(d.terms.historicalFailure)} = ${w.historicalFailure} x ${entry.historicalFailure}`,
    );
  } else {
    lines.push(`score  -  tool not in the catalogue (unknownTools: ${doc.unknownTools})`);
  }
  if (d.matched.length === 0) lines.push(`rules  none matched (${doc.rules.length} in policy)`);
  else {
    lines.push(
      `rules  ${d.matched.length} effect(s) from ${new Set(d.matched.map((m) => m.id)).size} rule(s)`,
    );
    for (const m of d.matched) lines.push(`  ${m.id}: ${m.effect}`);
  }
  for (const e of d.errors) lines.push(`error  ${e} (failed closed)`);
  lines.push(`tier   ${d.tier}: ${requirementText(d)}`);
  lines.push(`why    ${d.explanation.join("; ")}`);
  if (d.denied !== null) lines.push(`DENIED ${d.denied}`);
  return lines.join("\n");
}

function pad(n: number): string {
  return String(n).padEnd(6);
}

function requirementText(d: TierDecision): string {
  const r = d.requires;
  return `${r.reviewers} reviewer(s) [${r.strategies.join(", ") || "none"}]${humanText(r)}, verification ${d.params.verification}, max ${d.params.maxAttempts} attempt(s)`;
}

/**
 * Arguments that exercise each catalogue tool's interesting cases: small and large
 * amounts either side of the shipped thresholds, narrow and wide batches. Tools not
 * listed are judged with empty args.
 */
export const SAMPLE_ARGS: Readonly<Record<string, readonly Record<string, unknown>[]>> = {
  "ledger.balance": [{ account: "alice" }],
  "ledger.transfer": [
    { from: "alice", to: "bob", amount: 100 },
    { from: "treasury", to: "bob", amount: 7500 },
    { from: "treasury", to: "bob", amount: 20_000 },
  ],
  "ledger.refund": [
    { account: "carol", amount: 50, reference: "r-1" },
    { account: "carol", amount: 6000, reference: "r-2" },
  ],
  "ledger.close_account": [{ account: "dave" }],
  "ledger.batch_payout": [
    { batch: "b-small", payouts: payouts(3) },
    { batch: "b-wide", payouts: payouts(12) },
  ],
  "ledger.batch_reverse": [
    { batch: "b-small", payouts: payouts(3) },
    { batch: "b-wide", payouts: payouts(12) },
  ],
  "noop.echo": [{ text: "hello" }],
  "noop.write": [{ key: "k" }],
  "noop.batch": [{ keys: ["a", "b", "c", "d"] }],
  "flaky.write": [{ key: "k", passFromAttempt: 2 }],
  "flaky.undo": [{ key: "k", attempt: 1 }],
};

function payouts(n: number): { account: string; amount: number }[] {
  return Array.from({ length: n }, (_, i) => ({ account: `acct-${i + 1}`, amount: 100 }));
}

export interface PolicyDiffRow {
  tool: string;
  args?: Record<string, unknown>;
  tierA: Tier;
  tierB: Tier;
  deniedA: string | null;
  deniedB: string | null;
  reviewersA: number;
  reviewersB: number;
  humanA: boolean;
  humanB: boolean;
  /** True when the tier itself differs; otherwise only denial, quorum or human changed. */
  tierChanged: boolean;
}

/**
 * How the same steps fare under two policies: one row per tool and sample args whose
 * tier, denial, quorum or human requirement differ. Tools from either catalogue count;
 * a tool missing from one side shows as that side's unknown-tool outcome.
 */
export function diffPolicies(
  a: LoadedPolicy,
  b: LoadedPolicy,
  samples: Readonly<Record<string, readonly Record<string, unknown>[]>> = SAMPLE_ARGS,
): PolicyDiffRow[] {
  const tools = [...new Set([...Object.keys(a.doc.tools), ...Object.keys(b.doc.tools)])].sort();
  const rows: PolicyDiffRow[] = [];
  for (const tool of tools) {
    const argSets = Object.hasOwn(samples, tool) ? (samples[tool] ?? [{}]) : [{}];
    for (const args of argSets.length > 0 ? argSets : [{}]) {
      const facts: StepFacts = { tool, args, run: { id: "diff", step: 1, attempt: 1 } };
      const da = decideTier(a, facts);
      const db = decideTier(b, facts);
      // A step refused by both has no tier worth comparing.
      const bothDenied = da.denied !== null && db.denied !== null;
      const same =
        bothDenied ||
        (da.tier === db.tier &&
          (da.denied === null) === (db.denied === null) &&
          da.requires.reviewers === db.requires.reviewers &&
          da.requires.human === db.requires.human);
      if (same) continue;
      const row: PolicyDiffRow = {
        tool,
        tierA: da.tier,
        tierB: db.tier,
        deniedA: da.denied,
        deniedB: db.denied,
        reviewersA: da.requires.reviewers,
        reviewersB: db.requires.reviewers,
        humanA: da.requires.human,
        humanB: db.requires.human,
        tierChanged: da.tier !== db.tier,
      };
      if (Object.keys(args).length > 0) row.args = args;
      rows.push(row);
    }
  }
  return rows;
}

function outcome(tier: Tier, denied: string | null, reviewers: number, human: boolean): string {
  if (denied !== null) return "denied";
  return `${tier} (${reviewers}r${human ? "+h" : ""})`;
}

function argsText(args: Record<string, unknown> | undefined): string {
  if (!args) return "";
  const parts = Object.entries(args).map(
    ([k, v]) =>
      `${k}=${Array.isArray(v) ? `[${v.length}]` : typeof v === "object" && v !== null ? "{..}" : String(v)}`,
  );
  return parts.join(" ");
}

/** A table for a terminal; "r" is reviewers, "+h" a human. */
export function renderPolicyDiff(
  a: LoadedPolicy,
  b: LoadedPolicy,
  rows: readonly PolicyDiffRow[],
): string {
  const head = `${a.doc.environment} (${shortDigest(a.digest)}) -> ${b.doc.environment} (${shortDigest(b.digest)})`;
  if (rows.length === 0) return `${head}\nno differences on the sample steps`;
  const table = rows.map((r) => [
    r.tool,
    argsText(r.args),
    outcome(r.tierA, r.deniedA, r.reviewersA, r.humanA),
    outcome(r.tierB, r.deniedB, r.reviewersB, r.humanB),
    r.tierChanged ? "tier" : "approval",
  ]);
  const header = ["tool", "args", a.doc.environment, b.doc.environment, "change"];
  const widths = header.map((h, i) =>
    Math.max(h.length, ...table.map((row) => (row[i] ?? "").length)),
  );
  const fmt = (row: readonly string[]) =>
    row
      .map((c, i) => c.padEnd(widths[i] ?? 0))
      .join("  ")
      .trimEnd();
  const changed = rows.filter((r) => r.tierChanged).length;
  return [
    head,
    fmt(header),
    ...table.map(fmt),
    `${changed} tier change(s), ${rows.length - changed} approval change(s) on the same tier`,
  ].join("\n");
}

/** What `trias policy check` prints after a successful load. */
export function summarizePolicy(policy: LoadedPolicy): string {
  const { doc } = policy;
  const lines: string[] = [];
  lines.push(`policy ${doc.environment}: ${policy.file}`);
  lines.push(`digest ${policy.digest}`);
  if (doc.description) lines.push(`       ${doc.description}`);
  const t = doc.risk.thresholds;
  const w = doc.risk.weights;
  lines.push(
    `risk   ${w.op}*op + ${w.objects}*objects + ${w.crossDomain}*crossDomain + ${w.historicalFailure}*history; standard >= ${t.standard}, full >= ${t.full}`,
  );
  for (const tier of ["light", "standard", "full"] as const) {
    const p = doc.tiers[tier];
    lines.push(
      `tier   ${tier.padEnd(8)} ${p.reviewers} reviewer(s) [${p.strategies.join(", ") || "none"}]${p.human === false ? "" : p.human === true ? " + human" : ` + ${p.human.count} human(s) of ${p.human.group}`}, verification ${p.verification}, ${p.maxAttempts} attempt(s), review timeout ${p.reviewTimeoutMs} ms`,
    );
  }
  const limited = Object.entries(doc.tools).filter(([, e]) => rateLimitOf(e) !== null);
  lines.push(
    `tools  ${Object.keys(doc.tools).length} (unknown tools: ${doc.unknownTools})${limited.length ? `; rate-limited: ${limited.map(([n, e]) => rateSummary(n, e)).join(", ")}` : ""}`,
  );
  const count = (f: (r: (typeof doc.rules)[number]) => boolean) => doc.rules.filter(f).length;
  lines.push(
    `rules  ${doc.rules.length} (${count((r) => r.tier !== undefined)} raise a tier, ${count((r) => r.deny !== undefined)} deny, ${count((r) => r.require !== undefined)} add requirements)`,
  );
  lines.push(
    `budget ${doc.budgets.steps} steps, ${doc.budgets.tokens} tokens, $${doc.budgets.costUsd} per run`,
  );
  return lines.join("\n");
}
