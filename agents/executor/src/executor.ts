import type { KV } from "@nats-io/kv";
import { isRevisionConflict, type Delivery } from "@trias/bus";
import {
  GateError,
  assignmentFilter,
  boundedAdd,
  boundedSet,
  canonicalBytes,
  decode,
  encode,
  subjectFor,
  type JsonObject,
  type JsonValue,
  type StepExecuted,
  type Tier,
  type TraceContext,
} from "@trias/protocol";
import type { LoadedPolicy } from "@trias/policy";
import { checkArgs, ToolRefusal, type Catalogue } from "@trias/tools";
import { SpanKind, setActiveAttribute, triasAttributes, withSpan } from "@trias/telemetry";
import {
  countQuorum,
  faultPoint,
  openAssignment,
  openVerdict,
  type AgentHost,
  type HandlerResult,
  type Incoming,
  type OpenedAssignment,
  type OpenedVerdict,
} from "@trias/runtime";
import {
  ASSIGNMENT_MAX_DELIVER,
  CACHE_ENTRIES,
  FIRST_SIGHT_SLACK_MS,
  MAX_RETRY_DELAY_MS,
  WINDOW_CLOSE_SLACK_MS,
} from "./config.js";

export const EFFECTS_BUCKET = "trias_effects";

interface StepCase {
  assignment: OpenedAssignment;
  approvals: Map<string, { verdict: OpenedVerdict; seq: number }>;
  veto: string | null;
  hydrated: boolean;
}

type EffectRecord =
  | { status: "started"; at: number; by: string }
  | { status: "done"; frame: Uint8Array }
  | { status: "vetoed"; reason: string };

/**
 * The tool gateway. A tool runs only after every check passes, in this order:
 * decode and schema, signature and role, freshness and replay (the host), tier assignment,
 * quorum, policy digest, scope, idempotency. Then the effect, recorded durably before the
 * ack, so a redelivery, a crash or a restart never applies it twice.
 */
export class Executor {
  readonly #host: AgentHost;
  readonly #policy: LoadedPolicy;
  readonly #tools: Catalogue;
  readonly #effects: KV;
  readonly #cases = new Map<string, StepCase>();
  readonly #quarantined = new Set<string>();
  /** Effect keys of steps this process saw through (bounded): late verdicts stop here. */
  readonly #done = new Set<string>();
  /** Runs found not quarantined in the effects bucket (see #checkNotQuarantined). */
  readonly #clean = new Set<string>();
  #startedAt = Number.MAX_SAFE_INTEGER;

  constructor(host: AgentHost, policy: LoadedPolicy, tools: Catalogue, effects: KV) {
    this.#host = host;
    this.#policy = policy;
    this.#tools = tools;
    this.#effects = effects;
  }

  async start(): Promise<void> {
    this.#startedAt = this.#host.now();
    await this.#host.listen(
      "executor-assignments",
      assignmentFilter("all"),
      (inc) => this.onAssignment(inc),
      // A reviewed step's assignment comes back when its review window closes (the durable
      // timer below); when this process already ran the step, that costs nothing to skip.
      // Skipping on the unverified envelope is safe: a skip never runs anything.
      {
        maxDeliver: ASSIGNMENT_MAX_DELIVER,
        wanted: (env) => !this.#done.has(envelopeEffectKey(env)),
      },
    );
    await this.#host.listen("executor-verdicts", "trias.*.verdict.*", (inc) => this.onVerdict(inc));
    await this.#host.listen("executor-recovery", "trias.*.recovery_decided.*", (inc) =>
      this.onRecovery(inc),
    );
  }

  #checkPolicy(a: OpenedAssignment): void {
    if (a.message.body.policyDigest !== this.#policy.digest) {
      throw new GateError(
        "policy_digest_mismatch",
        `step was routed under policy ${a.message.body.policyDigest.slice(0, 12)} but this executor enforces ${this.#policy.doc.environment} policy ${this.#policy.digest.slice(0, 12)}`,
      );
    }
  }

  #case(a: OpenedAssignment): StepCase {
    const key = a.message.body.digest;
    let c = this.#cases.get(key);
    if (!c) {
      c = { assignment: a, approvals: new Map(), veto: null, hydrated: false };
      boundedSet(this.#cases, key, c, CACHE_ENTRIES);
    }
    return c;
  }

  /**
   * Nothing can have acted on this message before: it is the first delivery of one issued
   * after this process started (by its sender's clock, with slack for skew), and this
   * process is the only executor.
   */
  #firstSight(issuedAt: number, d: Delivery): boolean {
    return issuedAt > this.#startedAt + FIRST_SIGHT_SLACK_MS && d.deliveryCount === 1;
  }

  async onAssignment(inc: Incoming): Promise<HandlerResult> {
    // The filter takes every router subject: its rejection notices come too.
    if (inc.message.kind !== "tier_assigned") return;
    const a = openAssignment(this.#host.registry, inc.delivery.data);
    this.#checkPolicy(a);
    if (a.message.body.denied !== null) return;
    const c = this.#case(a);
    const { requires } = a.message.body;
    if (requires.reviewers === 0 && !requires.human) {
      await this.#tryExecute(c, this.#firstSight(a.message.issuedAt, inc.delivery));
      return;
    }
    // A step waiting for reviewers: this message doubles as a durable timer. It is
    // redelivered when the review window closes; if nothing ran by then, the step is refused.
    if (this.#done.has(effectKey(a))) return;
    // Only a step routed before this process started, or a redelivery, can have run
    // without this process knowing: only then ask the effects bucket.
    if (!this.#firstSight(a.message.issuedAt, inc.delivery) && (await this.#effect(a))) return;
    // Vetoed here already (the verdict came first): recorded as such, nothing more to do.
    if (c.veto !== null) return;
    await this.#hydrate(c, inc.delivery);
    if (await this.#tryExecute(c)) return;
    const params = this.#policy.doc.tiers[a.message.body.tier];
    const windowMs = requires.human ? params.humanTimeoutMs : params.reviewTimeoutMs;
    const left = a.message.issuedAt + windowMs - this.#host.now();
    if (left > 0 && c.veto === null)
      return { retryInMs: Math.min(left + WINDOW_CLOSE_SLACK_MS, MAX_RETRY_DELAY_MS) };
    const q = countQuorum(
      requires,
      [...c.approvals.values()].map((x) => x.verdict),
    );
    throw new GateError(
      "quorum_not_met",
      c.veto ??
        `${q.reason} within ${windowMs} ms: step ${a.message.step} of run ${a.message.run} will not execute`,
    );
  }

  async onVerdict(inc: Incoming): Promise<void> {
    const { verdict, assignment } = openVerdict(this.#host.registry, inc.delivery.data);
    this.#checkPolicy(assignment);
    const c = this.#case(assignment);
    await this.#hydrate(c, inc.delivery);
    // A verdict after the step ran (a reviewer the quorum did not need) changes nothing. What
    // this process ran it remembers; anything else the claim in #runOnce settles, so the
    // verdict that completes a quorum costs no extra round trip.
    if (this.#done.has(effectKey(assignment))) return;
    const kid = verdict.key.kid;
    const prior = c.approvals.get(kid);
    if (prior && prior.seq !== inc.delivery.seq) {
      throw new GateError(
        "duplicate_reviewer",
        `${verdict.key.name} already gave a verdict on this step; one key counts once`,
      );
    }
    if (verdict.message.body.decision !== "approve") {
      // A veto must never overwrite the record of an effect that already happened.
      if (await this.#effect(assignment)) return;
      c.veto = `${verdict.key.name} said ${verdict.message.body.decision}: ${verdict.message.body.reasons.join("; ")}`;
      await this.#effects.put(
        effectKey(assignment),
        encode({ status: "vetoed", reason: c.veto } satisfies EffectRecord),
      );
      return;
    }
    c.approvals.set(kid, { verdict, seq: inc.delivery.seq });
    await this.#tryExecute(c);
  }

  /**
   * Verdicts this process did not see (stored before it started: a restart, or a message
   * redelivered from another replica's watch) are rebuilt from the trace, never assumed.
   */
  async #hydrate(c: StepCase, d: Delivery): Promise<void> {
    if (c.hydrated) return;
    c.hydrated = true;
    const m = c.assignment.message;
    // Verdicts can only predate this process if the step was routed before it started (by the
    // router's clock, with slack) or this message is a redelivery.
    if (this.#firstSight(m.issuedAt, d)) return;
    const exceptSeq = d.seq;
    for (const stored of await this.#host.bus.readAll(`trias.*.verdict.${m.run}`)) {
      if (stored.seq === exceptSeq) continue;
      try {
        const { verdict } = openVerdict(this.#host.registry, stored.data);
        if (verdict.message.body.digest !== m.body.digest) continue;
        if (verdict.message.body.decision !== "approve")
          c.veto ??= `${verdict.key.name} said ${verdict.message.body.decision}`;
        else if (!c.approvals.has(verdict.key.kid))
          c.approvals.set(verdict.key.kid, { verdict, seq: stored.seq });
      } catch {
        // Invalid verdicts in the trace were refused when they arrived; they count for nothing.
      }
    }
  }

  async #effect(a: OpenedAssignment): Promise<EffectRecord | null> {
    const e = await this.#effects.get(effectKey(a));
    if (!e || e.operation !== "PUT" || e.value.length === 0) return null;
    return decode(e.value) as EffectRecord;
  }

  /**
   * Returns true when the step has executed (now or before). `firstSight`: the step's
   * assignment is on its first sight here (see #firstSight), so no claim is needed.
   */
  async #tryExecute(c: StepCase, firstSight = false): Promise<boolean> {
    const a = c.assignment;
    const m = a.message;
    const q = countQuorum(
      m.body.requires,
      [...c.approvals.values()].map((x) => x.verdict),
    );
    if (!q.met || c.veto !== null) return false;
    // A quarantine only ever follows an execution: the run's very first step cannot be in one.
    if (m.step !== 0 || m.attempt !== 0) await this.#checkNotQuarantined(m.run);
    const proposal = a.proposal.message.body;
    setActiveAttribute("trias.tier", m.body.tier);
    setActiveAttribute("trias.policy_digest", m.body.policyDigest);
    const step = m.step ?? 0;
    const ran = await this.#runOnce({
      key: effectKey(a),
      firstSight,
      emitId: `exec-${m.run}-${step}-${m.attempt}`,
      run: m.run,
      step,
      attempt: m.attempt,
      trace: m.trace,
      tool: proposal.tool,
      args: proposal.args,
      tier: m.body.tier,
      policyDigest: m.body.policyDigest,
      effectId: `${m.run}:${step}:${m.attempt}`,
      body: (r) => ({
        digest: m.body.digest,
        tool: proposal.tool,
        args: proposal.args,
        tier: m.body.tier,
        ...r,
        approvals: q.counted,
        effectId: `${m.run}:${step}:${m.attempt}`,
        evidence: {
          assignment: a.bytes,
          // Every approval that made the quorum, the human's included, so the verifier can
          // re-count it on its own.
          approvals: [...c.approvals.values()]
            .filter(
              (x) =>
                q.counted.includes(x.verdict.key.kid) ||
                x.verdict.message.body.strategy === "human",
            )
            .map((x) => x.verdict.bytes),
        },
        compensationOf: null,
        index: proposal.index,
        total: proposal.total,
      }),
    });
    if (!ran) return false;
    // Done: the effects bucket answers for this step from now on, not memory; after the
    // plan's last step, for the run too.
    this.#cases.delete(m.body.digest);
    boundedAdd(this.#done, effectKey(a), CACHE_ENTRIES);
    if (proposal.index + 1 >= proposal.total) this.#clean.delete(m.run);
    return true;
  }

  /**
   * Scope, then idempotency, then the effect: the tool runs at most once per effect id.
   * The outcome is recorded durably (effects bucket) before the message that triggered it
   * is acked; a finished effect is only re-announced, with the same message id, which the
   * server drops as a duplicate.
   */
  async #runOnce(x: {
    key: string;
    firstSight?: boolean;
    emitId: string;
    run: string;
    step: number;
    attempt: number;
    trace: TraceContext | null;
    tool: string;
    args: JsonObject;
    tier: Tier;
    policyDigest: string;
    effectId: string;
    body: (r: { outcome: "ok" | "error"; result: JsonValue; error: string | null }) => StepExecuted;
  }): Promise<boolean> {
    const tool = this.#tools.get(x.tool);
    if (!tool)
      throw new GateError("scope_denied", `tool "${x.tool}" is not in this gateway's tool pack`);
    if (!this.#policy.doc.tools[x.tool]) {
      throw new GateError(
        "scope_denied",
        `tool "${x.tool}" is not in the ${this.#policy.doc.environment} policy catalogue`,
      );
    }
    const args = checkArgs(tool, x.args);
    if (!args.ok)
      throw new GateError("scope_denied", `arguments for ${x.tool} are invalid: ${args.reason}`);

    // Claim first (one round trip on the happy path); only a failed claim reads the record.
    // A step on its first sight cannot have run: its claim would only ever succeed, so the
    // outcome record below is created instead, and a record already there (a replay of the
    // assignment that outlived the replay window) is left as it is.
    let claimed = true;
    if (!x.firstSight) {
      try {
        await this.#effects.create(
          x.key,
          encode({
            status: "started",
            at: this.#host.now(),
            by: this.#host.name,
          } satisfies EffectRecord),
        );
      } catch {
        claimed = false;
      }
    }
    if (!claimed) {
      const stored = await this.#effects.get(x.key);
      const prior =
        stored && stored.operation === "PUT" && stored.value.length > 0
          ? (decode(stored.value) as EffectRecord)
          : null;
      if (prior?.status === "done") {
        await this.#republish(prior.frame, x.run);
        return true;
      }
      if (prior?.status === "vetoed") return false;
      // "started": a crash after the claim (or a replica mid-way). The tool's effect is keyed
      // by the effect id, so running it again applies nothing twice.
    }
    faultPoint(this.#host.name, "after-claim");
    let outcome: "ok" | "error" = "ok";
    let result: JsonValue = null;
    let error: string | null = null;
    try {
      result = await withSpan(
        `tool ${x.tool}`,
        () => ({
          kind: SpanKind.CLIENT,
          attributes: triasAttributes({
            run: x.run,
            step: x.step,
            attempt: x.attempt,
            tier: x.tier,
            tool: x.tool,
            policyDigest: x.policyDigest,
          }),
        }),
        () => tool.run(x.args, { effectId: x.effectId, attempt: x.attempt }),
      );
    } catch (e) {
      if (!(e instanceof ToolRefusal)) throw e;
      outcome = "error";
      error = e.message;
    }
    faultPoint(this.#host.name, "after-effect");
    // Announce and record at once (one round trip, not two): either may land without the
    // other if the process dies here, and the redelivery repairs both. A record without its
    // message is republished from the record; a message without its record runs the tool
    // again under the same effect id (applies nothing twice) and announces it under the same
    // message id (dropped by the server as a duplicate).
    await this.#host.emit("step_executed", {
      id: x.emitId,
      run: x.run,
      step: x.step,
      attempt: x.attempt,
      body: x.body({ outcome, result, error }),
      trace: x.trace,
      alongside: async (frame) => {
        const done = encode({ status: "done", frame } satisfies EffectRecord);
        if (!x.firstSight) return this.#effects.put(x.key, done);
        try {
          return await this.#effects.create(x.key, done);
        } catch (e) {
          if (!isRevisionConflict(e)) throw e;
          return undefined;
        }
      },
    });
    faultPoint(this.#host.name, "after-record");
    return true;
  }

  async #checkNotQuarantined(run: string): Promise<void> {
    // A quarantine recorded before this process started is only in the effects bucket; one
    // ordered since is in memory too (this process records it). So the bucket is asked once
    // per run, not once per step.
    if (!this.#quarantined.has(run) && !this.#clean.has(run)) {
      const e = await this.#effects.get(`${run}.quarantine`);
      if (e && e.operation === "PUT" && e.value.length > 0) this.#quarantined.add(run);
      else boundedAdd(this.#clean, run, CACHE_ENTRIES);
    }
    if (this.#quarantined.has(run))
      throw new GateError("run_quarantined", `run ${run} is quarantined: nothing more executes`);
  }

  /** Signed recovery orders: compensations to run, and quarantines to enforce. */
  async onRecovery(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "recovery_decided") return;
    if (m.body.action === "quarantine") {
      this.#quarantined.add(m.run);
      await this.#effects.put(
        `${m.run}.quarantine`,
        encode({ status: "vetoed", reason: m.body.reason } satisfies EffectRecord),
      );
      return;
    }
    if (m.body.action !== "compensate") return;
    await this.#checkNotQuarantined(m.run);
    const c = m.body.compensation;
    if (!c || !m.body.evidence)
      throw new GateError(
        "scope_denied",
        "a compensate order must name the compensation and carry the effect it undoes",
      );
    const original = this.#host.registry.open(m.body.evidence);
    const o = original.message;
    if (
      o.kind !== "step_executed" ||
      o.run !== m.run ||
      o.body.digest !== c.of ||
      o.step !== c.step ||
      o.body.outcome !== "ok" ||
      o.body.compensationOf !== null
    ) {
      throw new GateError(
        "scope_denied",
        `the order's evidence is not the executed effect of step ${c.step} (${c.of.slice(0, 12)})`,
      );
    }
    const declared = this.#tools.get(o.body.tool)?.compensate(o.body.args, o.body.result) ?? null;
    if (
      !declared ||
      declared.tool !== c.tool ||
      !Buffer.from(canonicalBytes(declared.args)).equals(Buffer.from(canonicalBytes(c.args)))
    ) {
      throw new GateError(
        "scope_denied",
        `${c.tool} is not the compensation ${o.body.tool} declares for this effect`,
      );
    }
    const key = `${m.run}.${c.step}.c.${m.id}`;
    const effectId = `${m.run}:${c.step}:c:${m.id}`;
    await this.#runOnce({
      key,
      emitId: `comp-${m.run}-${c.step}-${m.id}`,
      run: m.run,
      step: c.step,
      attempt: o.attempt,
      trace: m.trace,
      tool: c.tool,
      args: c.args,
      tier: o.body.tier,
      policyDigest: this.#policy.digest,
      effectId,
      body: (r) => ({
        digest: c.of,
        tool: c.tool,
        args: c.args,
        tier: o.body.tier,
        ...r,
        approvals: [],
        effectId,
        evidence: {
          assignment: inc.delivery.data,
          approvals: [m.body.evidence ?? new Uint8Array()],
        },
        compensationOf: c.of,
        index: c.step,
        total: o.body.total,
      }),
    });
  }

  async #republish(frame: Uint8Array, run: string): Promise<void> {
    const opened = this.#host.registry.open(frame);
    await this.#host.bus.publish(subjectFor("executor", "step_executed", run), frame, {
      msgId: opened.message.id,
    });
  }
}

export function effectKey(a: OpenedAssignment): string {
  return keyOf(a.message);
}

function keyOf(m: { run: string; step: number | null; attempt: number }): string {
  return `${m.run}.${m.step ?? 0}.${m.attempt}`;
}

/** effectKey from an unverified envelope, or "" when it does not look like an assignment. */
function envelopeEffectKey(env: unknown): string {
  const e = env as { kind?: unknown; run?: unknown; step?: unknown; attempt?: unknown };
  if (e?.kind !== "tier_assigned" || typeof e.run !== "string" || typeof e.attempt !== "number")
    return "";
  return keyOf({
    run: e.run,
    step: typeof e.step === "number" ? e.step : null,
    attempt: e.attempt,
  });
}
