import type { KV } from "@nats-io/kv";
import type { Delivery } from "@trias/bus";
import {
  GateError,
  decode,
  encode,
  subjectFor,
  type StepExecuted,
  type JsonValue,
} from "@trias/protocol";
import type { LoadedPolicy } from "@trias/policy";
import { checkArgs, TOOLS, ToolRefusal, type ToolRuntime } from "@trias/tools";
import { SpanKind, setActiveAttribute, triasAttributes, withSpan } from "@trias/telemetry";
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
  readonly #rt: ToolRuntime;
  readonly #effects: KV;
  readonly #cases = new Map<string, StepCase>();
  #startedAt = Number.MAX_SAFE_INTEGER;

  constructor(host: AgentHost, policy: LoadedPolicy, rt: ToolRuntime, effects: KV) {
    this.#host = host;
    this.#policy = policy;
    this.#rt = rt;
    this.#effects = effects;
  }

  async start(): Promise<void> {
    this.#startedAt = this.#host.now();
    await this.#host.listen(
      "executor-assignments",
      subjectFor("router", "tier_assigned", "*"),
      (inc) => this.onAssignment(inc),
      { maxDeliver: 100 },
    );
    await this.#host.listen("executor-verdicts", "trias.*.verdict.*", (inc) => this.onVerdict(inc));
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
      if (this.#cases.size > 20_000) this.#cases.delete(this.#cases.keys().next().value ?? "");
      this.#cases.set(key, c);
    }
    return c;
  }

  async onAssignment(inc: Incoming): Promise<HandlerResult> {
    const a = openAssignment(this.#host.registry, inc.delivery.data);
    this.#checkPolicy(a);
    if (a.message.body.denied !== null) return;
    const c = this.#case(a);
    const { requires } = a.message.body;
    if (requires.reviewers === 0 && !requires.human) {
      await this.#tryExecute(c);
      return;
    }
    // A step waiting for reviewers: this message doubles as a durable timer. It is
    // redelivered when the review window closes; if nothing ran by then, the step is refused.
    const rec = await this.#effect(a);
    if (rec) return;
    await this.#hydrate(c, inc.delivery);
    if (await this.#tryExecute(c)) return;
    const params = this.#policy.doc.tiers[a.message.body.tier];
    const windowMs = requires.human ? params.humanTimeoutMs : params.reviewTimeoutMs;
    const left = a.message.issuedAt + windowMs - this.#host.now();
    if (left > 0 && c.veto === null) return { retryInMs: Math.min(left + 50, 24 * 3600_000) };
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
    if (await this.#effect(assignment)) return;
    const kid = verdict.key.kid;
    const prior = c.approvals.get(kid);
    if (prior && prior.seq !== inc.delivery.seq) {
      throw new GateError(
        "duplicate_reviewer",
        `${verdict.key.name} already gave a verdict on this step; one key counts once`,
      );
    }
    if (verdict.message.body.decision !== "approve") {
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
    if (d.timestampMs >= this.#startedAt && d.deliveryCount === 1) return;
    const exceptSeq = d.seq;
    const m = c.assignment.message;
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

  /** Returns true when the step has executed (now or before). */
  async #tryExecute(c: StepCase): Promise<boolean> {
    const a = c.assignment;
    const m = a.message;
    const q = countQuorum(
      m.body.requires,
      [...c.approvals.values()].map((x) => x.verdict),
    );
    if (!q.met || c.veto !== null) return false;
    const proposal = a.proposal.message.body;

    // Scope: the tool must exist in this gateway, be in the policy's catalogue and get valid arguments.
    const tool = TOOLS.get(proposal.tool);
    if (!tool)
      throw new GateError(
        "scope_denied",
        `tool "${proposal.tool}" is not in this gateway's tool pack`,
      );
    if (!this.#policy.doc.tools[proposal.tool])
      throw new GateError(
        "scope_denied",
        `tool "${proposal.tool}" is not in the ${this.#policy.doc.environment} policy catalogue`,
      );
    const args = checkArgs(tool, proposal.args);
    if (!args.ok)
      throw new GateError(
        "scope_denied",
        `arguments for ${proposal.tool} are invalid: ${args.reason}`,
      );

    // Idempotency: claim the effect; a finished one is re-announced (same message id, so the
    // server drops the copy), never re-run.
    const key = effectKey(a);
    const prior = await this.#effect(a);
    if (prior?.status === "done") {
      await this.#republish(prior.frame, m.run);
      return true;
    }
    if (prior?.status === "vetoed") return false;
    if (!prior) {
      try {
        await this.#effects.create(
          key,
          encode({
            status: "started",
            at: this.#host.now(),
            by: this.#host.name,
          } satisfies EffectRecord),
        );
      } catch {
        // Someone else claimed it between our read and create: let that claim finish.
        return true;
      }
    }
    const step = m.step ?? 0;
    const effectId = `${m.run}:${step}:${m.attempt}`;
    let outcome: "ok" | "error" = "ok";
    let result: JsonValue = null;
    let error: string | null = null;
    try {
      result = await withSpan(
        `tool ${proposal.tool}`,
        { kind: SpanKind.CLIENT, attributes: triasAttributes({ run: m.run, step, attempt: m.attempt, tier: m.body.tier, tool: proposal.tool, policyDigest: m.body.policyDigest }) },
        () => tool.run(this.#rt, proposal.args, { effectId, attempt: m.attempt }),
      );
    } catch (e) {
      if (!(e instanceof ToolRefusal)) throw e;
      outcome = "error";
      error = e.message;
    }
    const body: StepExecuted = {
      digest: m.body.digest,
      tool: proposal.tool,
      args: proposal.args,
      tier: m.body.tier,
      outcome,
      result,
      error,
      approvals: q.counted,
      effectId,
      evidence: {
        assignment: a.bytes,
        approvals: [...c.approvals.values()]
          .filter((x) => q.counted.includes(x.verdict.key.kid))
          .map((x) => x.verdict.bytes),
      },
      compensationOf: null,
      index: proposal.index,
      total: proposal.total,
    };
    const emitted = await this.#host.emit("step_executed", {
      id: `exec-${m.run}-${step}-${m.attempt}`,
      run: m.run,
      step,
      attempt: m.attempt,
      body,
      trace: m.trace,
    });
    await this.#effects.put(
      key,
      encode({ status: "done", frame: emitted.bytes } satisfies EffectRecord),
    );
    return true;
  }

  async #republish(frame: Uint8Array, run: string): Promise<void> {
    const opened = this.#host.registry.open(frame);
    await this.#host.bus.publish(subjectFor("executor", "step_executed", run), frame, {
      msgId: opened.message.id,
    });
  }
}

export function effectKey(a: OpenedAssignment): string {
  return `${a.message.run}.${a.message.step ?? 0}.${a.message.attempt}`;
}
