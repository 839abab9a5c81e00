import {
  ValidationError,
  executionFits,
  isArgsRef,
  MAX_FRAME_BYTES,
  maxTier,
  proposalDigest,
  boundedSet,
  subjectFor,
  tierRank,
  type JsonObject,
  type MessageOf,
  type Tier,
  type TierAssigned,
} from "@trias/protocol";
import { checkArgumentSize, checkBudget, deriveStep, type LoadedPolicy } from "@trias/policy";
import { localLimiter, type Limiter } from "./rates.js";
import type { AgentHost, HandlerResult, Incoming, Payloads } from "@trias/runtime";
import { triasAttributes, withSpan } from "@trias/telemetry";
import { HELD_ENTRIES, RUN_CACHE_ENTRIES } from "./config.js";

/** What the router knows of a run when a proposal arrives: all derived from the trace. */
export interface RunContext {
  /** Proposals so far, including this one (the step budget counts retries too). */
  proposals: number;
  /** Verifications of this run that did not pass. */
  failures: number;
  /** Model tokens and cost spent on the run's proposals so far, this one included. */
  tokens: number;
  costUsd: number;
  /** The highest tier each step index was assigned: later attempts never go below it. */
  floors: Map<number, Tier>;
}

export function emptyContext(): RunContext {
  return { proposals: 0, failures: 0, tokens: 0, costUsd: 0, floors: new Map() };
}

/**
 * A proposal's arguments as the policy judges them: resolved when they travel by reference,
 * or why they cannot be (over the policy's bound, bytes missing or changed): then the step
 * is denied before any review or effect.
 */
export interface ResolvedArgs {
  args: JsonObject;
  refusal: string | null;
}

/**
 * The arguments of a proposal for routing: inline ones as they are (no read); a reference
 * bounded by the policy before a byte is read, then resolved and checked against its digest.
 */
export async function resolveForRouting(
  policy: LoadedPolicy,
  payloads: Payloads,
  args: JsonObject,
): Promise<ResolvedArgs> {
  if (!isArgsRef(args)) return { args, refusal: null };
  const refusal = checkArgumentSize(policy, args);
  if (refusal !== null) return { args, refusal };
  try {
    return { args: await payloads.resolve(args), refusal: null };
  } catch (e) {
    if (!(e instanceof ValidationError)) throw e;
    return { args, refusal: e.message };
  }
}

/**
 * Pure: the tier assignment body for one signed proposal under one policy and what the
 * trace says of its run. Escalation is one-way: the floor is the step's earlier tier, raised
 * to the policy's `escalation.afterFailure` once the run has failed a verification.
 */
export function assign(
  policy: LoadedPolicy,
  proposal: MessageOf<"step_proposed">,
  proposalFrame: Uint8Array,
  ctx: RunContext = emptyContext(),
  rateRefusal: string | null = null,
  payload: ResolvedArgs = { args: proposal.body.args, refusal: null },
): TierAssigned {
  const step = proposal.step ?? 0;
  const { decision: d, unraised } = deriveStep(
    policy,
    {
      tool: proposal.body.tool,
      // The arguments themselves, also when the proposal carries them by reference.
      args: payload.args,
      run: proposal.run,
      step,
      attempt: proposal.attempt,
    },
    {
      proposals: ctx.proposals,
      failures: ctx.failures,
      stepFloor: ctx.floors.get(step) ?? "light",
    },
  );
  const budget = checkBudget(policy, {
    steps: ctx.proposals,
    tokens: ctx.tokens,
    costUsd: ctx.costUsd,
  });
  const approvals = d.requires.reviewers + (d.requires.human ? 1 : 0);
  const oversized = executionFits(proposalFrame.length, approvals)
    ? null
    : `the step's arguments (a ${proposalFrame.length}-byte proposal) would not fit the frames that carry them (its assignment${approvals > 0 ? " and verdicts" : ""} and execution record, at most ${MAX_FRAME_BYTES} bytes each): refused before any effect; send smaller arguments`;
  const denied = payload.refusal ?? d.denied ?? budget ?? rateRefusal ?? oversized;
  const explanation = [...d.explanation];
  if (tierRank(d.tier) > tierRank(unraised)) {
    explanation.push(
      `raised from ${unraised} to ${d.tier}: ${ctx.failures > 0 ? `${ctx.failures} failed verification(s) earlier in this run` : "this step was assigned a higher tier before"}`,
    );
  }
  if (budget) explanation.push(budget);
  if (rateRefusal) explanation.push(rateRefusal);
  if (oversized) explanation.push(oversized);
  if (payload.refusal) explanation.push(payload.refusal);
  return {
    proposal: proposalFrame,
    digest: proposalDigest({
      tool: proposal.body.tool,
      args: proposal.body.args,
      run: proposal.run,
      step,
      attempt: proposal.attempt,
      policyDigest: policy.digest,
    }),
    policyDigest: policy.digest,
    environment: policy.doc.environment,
    tier: d.tier,
    score: d.score,
    explanation,
    requires: d.requires,
    escalatedFrom: tierRank(d.tier) > tierRank(unraised) ? unraised : null,
    denied,
  };
}

/**
 * Assigns each proposed step a tier, with the run's budget and the tools' rate limits.
 * Run context lives in memory for speed and is rebuilt from the trace whenever this
 * process may have missed part of the run (a restart, a retry, a replan).
 */
export class Router {
  readonly #host: AgentHost;
  readonly #policy: LoadedPolicy;
  readonly #runs = new Map<string, RunContext>();
  readonly #limiter: Limiter;
  /** Proposal id -> when it was first held back for a rate limit. */
  readonly #held = new Map<string, number>();
  #startedAt = Number.MAX_SAFE_INTEGER;

  constructor(host: AgentHost, policy: LoadedPolicy, limiter: Limiter = localLimiter(policy)) {
    this.#host = host;
    this.#policy = policy;
    this.#limiter = limiter;
    // Runs now handled by another replica (docs/scaling.md, section 2): rebuilt from the
    // trace if they come back.
    host.onRunsMoved((moved) => {
      for (const run of this.#runs.keys()) if (moved(run)) this.#runs.delete(run);
    });
  }

  async start(): Promise<void> {
    this.#startedAt = this.#host.now();
    await this.#host.listen("router", subjectFor("proposer", "step_proposed", "*"), (inc) =>
      this.onProposal(inc),
    );
  }

  async #context(m: MessageOf<"step_proposed">, inc: Incoming): Promise<RunContext> {
    const known = this.#runs.get(m.run);
    const fresh =
      m.step === 0 &&
      m.attempt === 0 &&
      inc.delivery.timestampMs >= this.#startedAt &&
      inc.delivery.deliveryCount === 1;
    const mayHaveMissed = m.attempt > 0 || m.body.replanOf !== null || (!known && !fresh);
    let ctx = known ?? emptyContext();
    if (mayHaveMissed) ctx = await this.#rebuild(m.run, inc.delivery.seq);
    // Least recently routed out first. After a plan's last step the context is not needed:
    // a retry or replan of it rebuilds the context from the trace anyway.
    this.#runs.delete(m.run);
    if (m.body.index + 1 < m.body.total) boundedSet(this.#runs, m.run, ctx, RUN_CACHE_ENTRIES);
    return ctx;
  }

  async #rebuild(run: string, beforeSeq: number): Promise<RunContext> {
    const ctx = emptyContext();
    // From the run's start, not a scan of the trace (Bus.readRun, docs/scaling.md).
    const read = await this.#host.bus.readRun(run);
    if (read.fallback !== null && read.messages.length > 0)
      this.#host.log.warn({ run, why: read.fallback }, "run read from the start of the trace");
    for (const stored of read.messages) {
      if (stored.seq >= beforeSeq) break;
      let m;
      try {
        m = this.#host.registry.open(stored.data).message;
      } catch {
        continue;
      }
      if (m.kind === "step_proposed") {
        ctx.proposals++;
        ctx.tokens += (m.body.usage?.inputTokens ?? 0) + (m.body.usage?.outputTokens ?? 0);
        ctx.costUsd += m.body.usage?.costUsd ?? 0;
      }
      if (
        m.kind === "step_verified" &&
        m.body.verdict !== "passed" &&
        m.body.compensationOf === null
      )
        ctx.failures++;
      if (m.kind === "tier_assigned" && m.step !== null)
        ctx.floors.set(m.step, maxTier(ctx.floors.get(m.step) ?? "light", m.body.tier));
    }
    return ctx;
  }

  async onProposal(inc: Incoming): Promise<HandlerResult> {
    const m = inc.message;
    if (m.kind !== "step_proposed" || m.step === null) return;
    const step = m.step;
    // Before the run's context is touched: a delayed proposal comes back as a redelivery and
    // must not count twice. Its wait counts from its publication (the stream's timestamp).
    const now = this.#host.now();
    const rate = await this.#limiter.admit(m.body.tool, m.id, now, inc.delivery.timestampMs);
    if (rate.type === "delay") {
      const first = !this.#held.has(m.id);
      if (first) boundedSet(this.#held, m.id, now, HELD_ENTRIES);
      this.#host.log.info(
        { run: m.run, step, attempt: m.attempt, retryInMs: rate.ms, reason: rate.reason },
        "step held back by its tool's rate limit",
      );
      // Why the run waits, in its trace (a run open without a visible reason is a bug): once
      // per held step and attempt; a restarted router's repeat has the same id and is dropped.
      if (first)
        await this.#host.emit("step_held", {
          id: `held-${m.run}-${step}-${m.attempt}`,
          run: m.run,
          step,
          attempt: m.attempt,
          body: { tool: m.body.tool, reason: rate.reason, until: now + rate.ms },
          trace: m.trace,
        });
      return { retryInMs: rate.ms };
    }
    const rateRefusal = rate.type === "deny" ? rate.reason : null;
    const ctx = await this.#context(m, inc);
    ctx.proposals++;
    ctx.tokens += (m.body.usage?.inputTokens ?? 0) + (m.body.usage?.outputTokens ?? 0);
    ctx.costUsd += m.body.usage?.costUsd ?? 0;
    const payload = await resolveForRouting(this.#policy, this.#host.payloads, m.body.args);
    const body = withSpan(
      "policy.evaluate",
      () => ({
        attributes: triasAttributes({ run: m.run, step, policyDigest: this.#policy.digest }),
      }),
      (span) => {
        const b = assign(this.#policy, m, inc.delivery.data, ctx, rateRefusal, payload);
        if (span.isRecording()) {
          span.setAttributes(triasAttributes({ tier: b.tier }));
          span.setAttribute("trias.risk_score", b.score);
        }
        return b;
      },
    );
    const heldSince = this.#held.get(m.id);
    if (heldSince !== undefined) {
      this.#held.delete(m.id);
      body.explanation.push(
        `rate limit: held back ${((now - inc.delivery.timestampMs) / 1000).toFixed(1)} s for ${m.body.tool}'s rate limit before this decision`,
      );
    }
    ctx.floors.set(step, maxTier(ctx.floors.get(step) ?? "light", body.tier));
    await this.#host.emit("tier_assigned", {
      id: `tier-${m.run}-${step}-${m.attempt}`,
      run: m.run,
      step,
      attempt: m.attempt,
      body,
      trace: m.trace,
    });
  }
}
