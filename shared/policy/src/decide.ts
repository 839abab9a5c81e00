import {
  maxTier,
  tierRank,
  type ReviewRequirement,
  type ReviewStrategy,
  type Tier,
} from "@trias/protocol";
import type { LoadedPolicy } from "./load.js";
import type { ConditionFacts, Specialized } from "./conditions.js";
import type { Operation, Rule, ToolEntry, TierParams } from "./schema.js";

export interface StepFacts {
  tool: string;
  args: Record<string, unknown>;
  run: { id: string; step: number; attempt: number; [k: string]: unknown };
}

export interface RiskTerms {
  op: number;
  objects: number;
  crossDomain: number;
  historicalFailure: number;
}

export interface MatchedRule {
  id: string;
  effect: string;
}

export interface TierDecision {
  tier: Tier;
  /** The tier the risk score alone gives, before rules. */
  scoreTier: Tier;
  score: number;
  /** Each term already multiplied by its weight; they sum to `score`. */
  terms: RiskTerms;
  /** Objects the step touches, as counted for the objects term (null for an unknown tool). */
  objects?: number | null;
  matched: MatchedRule[];
  requires: ReviewRequirement;
  params: TierParams;
  /** Set when a rule (or an unknown tool, or a failed deny condition) refuses the step. */
  denied: string | null;
  /** Conditions that failed to evaluate; each forced the strict outcome. */
  errors: string[];
  /** Built on first read: the hot path only records what happened. */
  explanation: string[];
}

function round(n: number): number {
  return Math.round(n * 10_000) / 10_000;
}

interface RulePlan {
  rule: Rule;
  /** `true`: holds for this tool whatever the step; otherwise what to evaluate per step. */
  test: true | ((facts: ConditionFacts) => boolean);
  /** Precomputed so that a match costs no string building. */
  tierEffect: string;
  requireEffect: string;
}

interface ToolPlan {
  entry: ToolEntry;
  /** Weighted op, crossDomain and history terms: fixed per tool. */
  op: number;
  crossDomain: number;
  historicalFailure: number;
  countOf: string | null;
  /** For a fixed object count, the whole score is fixed. */
  fixed: { objects: number; n: number; score: number; scoreTier: Tier } | null;
  rules: RulePlan[];
}

interface PolicyPlan {
  tools: Map<string, ToolPlan>;
  /** For tools outside the catalogue, nothing is known in advance: every rule is a candidate. */
  allRules: RulePlan[];
}

// Keyed by the loaded policy object, so LoadedPolicy stays a plain record that callers
// (and tests) may build themselves; a policy is treated as immutable once loaded.
const plans = new WeakMap<LoadedPolicy, PolicyPlan>();

function tierFor(score: number, policy: LoadedPolicy): Tier {
  const t = policy.doc.risk.thresholds;
  return score >= t.full ? "full" : score >= t.standard ? "standard" : "light";
}

function planFor(policy: LoadedPolicy): PolicyPlan {
  const cached = plans.get(policy);
  if (cached) return cached;
  const { doc } = policy;
  const rulePlan = (rule: Rule, test: RulePlan["test"]): RulePlan => ({
    rule,
    test,
    tierEffect: rule.tier ? `tier >= ${rule.tier}` : "",
    requireEffect: rule.require ? `require ${JSON.stringify(rule.require)}` : "",
  });
  // A rule without a compiled condition cannot be judged, so it is taken as matching.
  const fullTest = (rule: Rule): RulePlan["test"] => {
    const cond = policy.conditions.get(rule.id);
    return cond ? (f) => cond.evaluate(f) : true;
  };
  const allRules = doc.rules.map((r) => rulePlan(r, fullTest(r)));
  const tools = new Map<string, ToolPlan>();
  const w = doc.risk.weights;
  for (const [name, entry] of Object.entries(doc.tools)) {
    const rules: RulePlan[] = [];
    for (const rule of doc.rules) {
      const cond = policy.conditions.get(rule.id);
      let test: Specialized = true;
      if (cond) {
        try {
          test =
            cond.specialize?.({
              tool: name,
              op: entry.op,
              domains: entry.domains,
              env: doc.environment,
            }) ?? ((f) => cond.evaluate(f));
        } catch {
          test = (f) => cond.evaluate(f);
        }
      }
      if (test !== false) rules.push(rulePlan(rule, test));
    }
    const plan: ToolPlan = {
      entry,
      op: round(w.op * (doc.risk.operations[entry.op] ?? 1)),
      crossDomain: round(w.crossDomain * (entry.domains.length > 1 ? 1 : 0)),
      historicalFailure: round(w.historicalFailure * entry.historicalFailure),
      countOf: "countOf" in entry.objects ? entry.objects.countOf : null,
      fixed: null,
      rules,
    };
    if ("count" in entry.objects) {
      const n = entry.objects.count;
      const objects = round(w.objects * Math.min(1, n / doc.risk.objectsSaturateAt));
      const score = round(plan.op + objects + plan.crossDomain + plan.historicalFailure);
      plan.fixed = { objects, n, score, scoreTier: tierFor(score, policy) };
    }
    tools.set(name, plan);
  }
  const built = { tools, allRules };
  plans.set(policy, built);
  return built;
}

/** What happened to one rule, kept cheap; the explanation is written from these on demand. */
type RuleEvent =
  | { kind: "tier"; rule: Rule; before: Tier; after: Tier }
  | { kind: "require"; rule: Rule }
  | { kind: "deny"; rule: Rule }
  | { kind: "error"; rule: Rule; reason: string };

/**
 * Why a step for a tool no policy entry names is refused, and how to allow it: the tool may
 * well be loaded (a pack, an MCP server), but nothing routes a tool the policy does not rate.
 */
export function unknownToolReason(tool: string, environment: string): string {
  return `tool "${tool}" is not in the ${environment} policy's tool catalogue: add an entry for it under \`tools:\` in the policy (\`trias policy scaffold\` prints one for every loaded tool)`;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function messageOf(e: unknown): string {
  try {
    return String((e as Error)?.message ?? e).split("\n")[0] || "evaluation failed";
  } catch {
    return "evaluation failed";
  }
}

/**
 * The risk score (docs/design.md, Tiers), then rules, which can only raise (invariant 3). Pure and total: it never
 * throws, and whatever goes wrong (unknown tool, a condition that fails) moves the step
 * to the strict side, with the reason in the explanation.
 */
export function decideTier(
  policy: LoadedPolicy,
  facts: StepFacts,
  floor: Tier = "light",
): TierDecision {
  const { doc } = policy;
  const plan = planFor(policy);
  const toolName = typeof facts?.tool === "string" ? facts.tool : String(facts?.tool);
  // Garbage from a caller is treated as "no args": conditions over args then fail closed.
  const args = isRecord(facts?.args) ? facts.args : {};
  const run = isRecord(facts?.run) ? facts.run : {};
  if (tierRank(floor) < 0) floor = "full";
  const errors: string[] = [];
  const matched: MatchedRule[] = [];
  const events: RuleEvent[] = [];
  let denied: string | null = null;

  const tp = plan.tools.get(toolName);
  let terms: RiskTerms;
  let score: number;
  let scoreTier: Tier;
  let objects: number | null = null;
  let countNote = "";
  let op: Operation = "irreversible";
  let domains: readonly string[] = [];
  let candidates: RulePlan[];
  if (!tp) {
    terms = { op: 0, objects: 0, crossDomain: 0, historicalFailure: 0 };
    score = 1;
    scoreTier = "full";
    if (doc.unknownTools === "deny") denied = unknownToolReason(toolName, doc.environment);
    candidates = plan.allRules;
  } else {
    op = tp.entry.op;
    domains = tp.entry.domains;
    candidates = tp.rules;
    if (tp.fixed) {
      objects = tp.fixed.n;
      terms = {
        op: tp.op,
        objects: tp.fixed.objects,
        crossDomain: tp.crossDomain,
        historicalFailure: tp.historicalFailure,
      };
      score = tp.fixed.score;
      scoreTier = tp.fixed.scoreTier;
    } else {
      const v = args[tp.countOf!];
      let n: number;
      if (Array.isArray(v)) n = v.length;
      else {
        // An uncountable batch is scored as a full one: the strict side.
        n = doc.risk.objectsSaturateAt;
        countNote = `; "${tp.countOf}" is not a list, counted as ${n}`;
      }
      objects = n;
      const objectsTerm = round(
        doc.risk.weights.objects * Math.min(1, n / doc.risk.objectsSaturateAt),
      );
      terms = {
        op: tp.op,
        objects: objectsTerm,
        crossDomain: tp.crossDomain,
        historicalFailure: tp.historicalFailure,
      };
      score = round(tp.op + objectsTerm + tp.crossDomain + tp.historicalFailure);
      scoreTier = tierFor(score, policy);
    }
  }

  let tier = maxTier(scoreTier, floor);
  let extraStrategies: Set<ReviewStrategy> | null = null;
  let extraHuman = false;
  let extraReviewers = 0;
  const applyRequire = (rule: Rule) => {
    const req = rule.require!;
    if (req.strategies && req.strategies.length > 0) {
      extraStrategies ??= new Set();
      for (const s of req.strategies) extraStrategies.add(s);
    }
    if (req.human) extraHuman = true;
    if (req.reviewers !== undefined && req.reviewers > extraReviewers)
      extraReviewers = req.reviewers;
  };
  let celFacts: ConditionFacts | undefined;
  for (const rp of candidates) {
    const rule = rp.rule;
    let hit = true;
    if (rp.test !== true) {
      celFacts ??= { tool: toolName, op, domains, args, run, env: doc.environment };
      try {
        hit = rp.test(celFacts);
      } catch (e) {
        // Fail closed: the rule is taken as matched, every effect it has applies, and the
        // step goes to the strictest tier.
        const reason = messageOf(e);
        errors.push(`rule ${rule.id}: ${reason}`);
        events.push({ kind: "error", rule, reason });
        if (rule.deny) denied ??= `rule ${rule.id} could not be evaluated: ${reason}`;
        if (rule.require) applyRequire(rule);
        tier = "full";
        continue;
      }
    }
    if (!hit) continue;
    if (rule.tier) {
      const before = tier;
      tier = maxTier(tier, rule.tier);
      matched.push({ id: rule.id, effect: rp.tierEffect });
      events.push({ kind: "tier", rule, before, after: tier });
    }
    if (rule.require) {
      applyRequire(rule);
      matched.push({ id: rule.id, effect: rp.requireEffect });
      events.push({ kind: "require", rule });
    }
    if (rule.deny) {
      denied ??= `rule ${rule.id}: ${rule.deny}`;
      matched.push({ id: rule.id, effect: "deny" });
      events.push({ kind: "deny", rule });
    }
  }

  const params = doc.tiers[tier];
  const strategies: ReviewStrategy[] =
    extraStrategies === null
      ? params.strategies.slice()
      : [
          ...new Set<ReviewStrategy>([
            ...params.strategies,
            ...(extraStrategies as Set<ReviewStrategy>),
          ]),
        ];
  const requires: ReviewRequirement = {
    reviewers: Math.max(params.reviewers, extraReviewers),
    strategies,
    human: params.human || extraHuman,
  };

  const explain = (): string[] => {
    const out: string[] = [];
    if (!tp) {
      out.push(
        `unknown tool "${toolName}": treated as full tier (unknownTools: ${doc.unknownTools})`,
      );
    } else {
      const t = doc.risk.thresholds;
      out.push(
        `risk ${score} = op ${terms.op} (${tp.entry.op}) + objects ${terms.objects} (${objects}${countNote}) + crossDomain ${terms.crossDomain} (${tp.entry.domains.join(",")}) + history ${terms.historicalFailure} -> ${scoreTier} (standard >= ${t.standard}, full >= ${t.full})`,
      );
    }
    if (tierRank(floor) > tierRank(scoreTier))
      out.push(`held at ${floor}: a tier once assigned never goes down`);
    for (const ev of events) {
      const id = ev.rule.id;
      if (ev.kind === "tier")
        out.push(
          `rule ${id}: tier >= ${ev.rule.tier}${ev.after !== ev.before ? ` (raised from ${ev.before})` : ""}`,
        );
      else if (ev.kind === "require")
        out.push(`rule ${id}: requires ${JSON.stringify(ev.rule.require)}`);
      else if (ev.kind === "deny") out.push(`rule ${id}: deny (${ev.rule.deny})`);
      else out.push(`rule ${id} could not be evaluated (${ev.reason}): failing closed`);
    }
    out.push(
      `tier ${tier}: ${requires.reviewers} reviewer(s) [${strategies.join(", ") || "none"}]${requires.human ? " + human" : ""}`,
    );
    return out;
  };
  return new Decision(
    tier,
    scoreTier,
    score,
    terms,
    objects,
    matched,
    requires,
    params,
    denied,
    errors,
    explain,
  );
}

/**
 * A TierDecision whose explanation is written on first read. A class with a prototype
 * getter, because an object literal with accessors costs more than the whole decision;
 * `toJSON` keeps the explanation in serialised copies.
 */
class Decision implements TierDecision {
  #explanation: string[] | undefined;
  readonly #explain: () => string[];
  constructor(
    public tier: Tier,
    public scoreTier: Tier,
    public score: number,
    public terms: RiskTerms,
    public objects: number | null,
    public matched: MatchedRule[],
    public requires: ReviewRequirement,
    public params: TierParams,
    public denied: string | null,
    public errors: string[],
    explain: () => string[],
  ) {
    this.#explain = explain;
  }
  get explanation(): string[] {
    return (this.#explanation ??= this.#explain());
  }
  set explanation(v: string[]) {
    this.#explanation = v;
  }
  toJSON(): TierDecision {
    // The explanation is a getter: spell the fields out so JSON has it.
    return { ...this, explanation: this.explanation };
  }
}
