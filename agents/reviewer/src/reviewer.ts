import type { KV } from "@nats-io/kv";
import { createExact, isRevisionConflict } from "@trias/bus";
import {
  assignmentFilter,
  isArgsRef,
  subjectFor,
  ValidationError,
  type BodyOf,
  type JsonObject,
} from "@trias/protocol";
import type { LlmClient } from "@trias/llm";
import { checkArgumentSize, type LoadedPolicy } from "@trias/policy";
import type { Catalogue } from "@trias/tools";
import {
  countQuorum,
  openAssignment,
  openVerdict,
  type AgentHost,
  type HandlerResult,
  type Incoming,
  type OpenedAssignment,
  type OpenedVerdict,
} from "@trias/runtime";
import { metrics, setActiveAttribute } from "@trias/telemetry";
import { reviewWithLlm } from "./llm-review.js";
import { reviewByRules } from "./rules.js";

const ENC = new TextEncoder();

export type ReviewerStrategy = "rules" | "llm";

export interface ReviewerOptions {
  /** The loaded tools (from the project configuration): arguments are judged by their schemas. */
  tools: Catalogue;
  /** The policy whose per-tool argument checks the rules strategy applies. */
  policy: LoadedPolicy;
  strategy?: ReviewerStrategy;
  llm?: LlmClient | null;
  /**
   * The reviewers' claims bucket. With it, a step that needs fewer reviewers than the
   * registry holds is judged by the first to claim it; without it, by every reviewer.
   * Worth it when a review costs (a model call); a rules review costs less than the claim.
   */
  claims?: KV | null;
  /** How long after a step's assignment a reviewer that did not claim it stands in. */
  standInMs?: number;
}

/** Default for ReviewerOptions.standInMs (TRIAS_REVIEW_STANDIN_MS). */
export const STAND_IN_MS = 2_000;

/**
 * One reviewer identity. Each identity has its own durable consumer, so every reviewer sees
 * every assignment that asks for review (the server filters out the rest: REVIEW_TOKEN); it
 * judges those that ask for reviewers of its strategy, or with claims on, those it claims
 * or stands in for (see #turn).
 */
export class Reviewer {
  readonly #host: AgentHost;
  readonly #strategy: ReviewerStrategy;
  readonly #llm: LlmClient | null;
  readonly #claims: KV | null;
  readonly #standInMs: number;
  readonly #tools: Catalogue;
  readonly #policy: LoadedPolicy;

  constructor(host: AgentHost, o: ReviewerOptions) {
    const strategy = o.strategy ?? "rules";
    const llm = o.llm ?? null;
    if (strategy === "llm" && !llm) {
      throw new ValidationError(
        "config_invalid",
        "an llm reviewer needs a model: set TRIAS_LLM_BASE_URL (and TRIAS_LLM_API_KEY, TRIAS_LLM_MODEL)",
      );
    }
    this.#host = host;
    this.#strategy = strategy;
    this.#llm = llm;
    this.#claims = o.claims ?? null;
    this.#standInMs = o.standInMs ?? STAND_IN_MS;
    this.#tools = o.tools;
    this.#policy = o.policy;
  }

  async start(): Promise<void> {
    await this.#host.listen(
      `reviewer-${this.#host.name}`,
      assignmentFilter("review"),
      (inc) => this.onAssignment(inc),
      { wanted: (env) => mayNeed(env, this.#strategy) },
    );
  }

  async onAssignment(inc: Incoming): Promise<HandlerResult> {
    const m = inc.message;
    if (m.kind !== "tier_assigned") return;
    if (!needs(m.body, this.#strategy)) return;
    const a = openAssignment(this.#host.registry, inc.delivery.data);
    const turn = await this.#turn(a, inc.delivery.deliveryCount);
    if (turn !== "judge") return turn === "skip" ? undefined : turn;
    const { digest } = a.message.body;
    const proposal = a.proposal.message.body;
    // The action judged is the real one: arguments carried by reference are read back and
    // checked against the digest the verdict binds (docs/security.md, "Bounded messages").
    const resolved = await this.#arguments(proposal.args);
    const v =
      typeof resolved === "string"
        ? { decision: "reject" as const, reasons: [resolved] }
        : this.#strategy === "llm" && this.#llm
          ? await reviewWithLlm(this.#llm, { ...proposal, args: resolved }, this.#tools)
          : reviewByRules({ ...proposal, args: resolved }, this.#tools, this.#policy);
    setActiveAttribute("trias.verdict", v.decision);
    setActiveAttribute("trias.tier", a.message.body.tier);
    setActiveAttribute("trias.policy_digest", a.message.body.policyDigest);
    metrics.verdict(this.#host.name, v.decision);
    await this.#host.emit("verdict", {
      id: `verdict-${this.#host.name}-${digest.slice(0, 32)}`,
      run: a.message.run,
      step: a.message.step,
      attempt: a.message.attempt,
      body: {
        digest,
        assignment: inc.delivery.data,
        decision: v.decision,
        strategy: this.#strategy,
        reasons: v.reasons,
      },
      trace: a.message.trace,
    });
  }

  /** A proposal's arguments (inline: no read), or why they cannot be judged. */
  async #arguments(args: JsonObject): Promise<JsonObject | string> {
    if (!isArgsRef(args)) return args;
    const refusal = checkArgumentSize(this.#policy, args);
    if (refusal !== null) return refusal;
    try {
      return await this.#host.payloads.resolve(args);
    } catch (e) {
      if (e instanceof ValidationError) return e.message;
      throw e;
    }
  }

  /**
   * Whether to judge this step now. With claims on, a step that needs k reviewers while
   * the registry holds more is judged by the first k to claim one of its k slots (a KV
   * create, which only one can win), so it costs k reviews (k model calls, with llm
   * reviewers), not one per reviewer. The others stand by: the assignment comes back after
   * standInMs (a durable timer) and they judge it then only if the trace still lacks its
   * verdicts, so a claimant that died costs a delay, not the step. A claimant that comes
   * back (a redelivery) finds its own claim and judges.
   */
  async #turn(
    a: OpenedAssignment,
    deliveryCount: number,
  ): Promise<"judge" | "skip" | { retryInMs: number }> {
    if (this.#claims === null) return "judge";
    const { digest, requires } = a.message.body;
    const pool = this.#host.registry
      .all()
      .filter((k) => k.role === "reviewer" && k.status === "active").length;
    if (requires.reviewers >= pool) return "judge";
    // Claims are an economy, not a safeguard: when they or the trace read fail, judge (one
    // verdict too many at worst) rather than leave the step without its review.
    try {
      if (await this.#claim(digest, requires.reviewers, deliveryCount)) return "judge";
      const due = a.message.issuedAt + this.#standInMs - this.#host.now();
      if (due > 0) return { retryInMs: due };
      return (await this.#judged(a)) ? "skip" : "judge";
    } catch (e) {
      this.#host.log.warn({ digest, err: String(e) }, "review claim failed; judging anyway");
      return "judge";
    }
  }

  /** Whether this identity holds one of the step's k slots, taking a free one if it can. */
  async #claim(digest: string, k: number, deliveryCount: number): Promise<boolean> {
    const claims = this.#claims;
    if (claims === null) return true;
    const me = this.#host.signer.kid;
    for (let slot = 0; slot < k; slot++) {
      const key = `${digest}.${slot}`;
      if (deliveryCount > 1) {
        // Only a redelivery can find a claim of this identity's own.
        const held = await claims.get(key);
        if (held?.string() === me) return true;
        if (held !== null) continue;
      }
      try {
        await createExact(claims, key, ENC.encode(me));
        return true;
      } catch (e) {
        if (!isRevisionConflict(e)) throw e;
      }
    }
    return false;
  }

  /** Whether the trace holds the step's verdicts: a refusal, or as many approvals as it needs. */
  async #judged(a: OpenedAssignment): Promise<boolean> {
    const { digest, requires } = a.message.body;
    const subject = subjectFor("reviewer", "verdict", a.message.run);
    // A run's steps follow one another, so the run's last reviewer verdict settles most
    // cases with one direct read: it is this step's (one reviewer needed) or a later one's.
    // Reading every verdict of the run costs the server a filtered consumer.
    const last = await this.#host.bus.lastBySubject(subject);
    if (last === null) return false;
    const lv = this.#verdict(last.data)?.message;
    if (lv !== undefined && laterStep(lv, a.message)) return true;
    if (lv?.body.digest === digest && requires.reviewers === 1) return true;
    const verdicts: OpenedVerdict[] = [];
    for (const s of (await this.#host.bus.readRun(a.message.run, { filter: subject })).messages) {
      const v = this.#verdict(s.data);
      if (v === undefined || v.message.body.digest !== digest) continue;
      if (v.message.body.decision !== "approve") return true;
      verdicts.push(v);
    }
    // Counted as the executor counts them: distinct keys, strategies the tier allows.
    return countQuorum(requires, verdicts).counted.length >= requires.reviewers;
  }

  /** A verdict from the trace, checked as the executor checks it; undefined if refused. */
  #verdict(bytes: Uint8Array): OpenedVerdict | undefined {
    try {
      return openVerdict(this.#host.registry, bytes).verdict;
    } catch {
      return undefined;
    }
  }
}

/** Whether `v` belongs to a later step or attempt of the run than `a`. */
function laterStep(
  v: { step: number | null; attempt: number },
  a: { step: number | null; attempt: number },
): boolean {
  const vs = v.step ?? -1;
  const as = a.step ?? -1;
  return vs > as || (vs === as && v.attempt > a.attempt);
}

type Assignment = Pick<BodyOf<"tier_assigned">, "requires" | "denied">;

/** Whether an assignment asks for a reviewer of this strategy. */
function needs(b: Assignment, strategy: ReviewerStrategy): boolean {
  return b.denied === null && b.requires.reviewers > 0 && b.requires.strategies.includes(strategy);
}

/**
 * Most steps need no reviewer of this strategy (every light step): tell from the unverified
 * envelope, before paying for a signature check. Anything unexpected is looked at properly.
 */
function mayNeed(env: unknown, strategy: ReviewerStrategy): boolean {
  const e = env as { kind?: unknown; body?: Partial<Assignment> } | undefined;
  const body = e?.body;
  if (
    e?.kind !== "tier_assigned" ||
    body?.requires === undefined ||
    !Array.isArray(body.requires.strategies) ||
    typeof body.requires.reviewers !== "number"
  )
    return true;
  return needs(body as Assignment, strategy);
}
