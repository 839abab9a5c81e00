import type { KV } from "@nats-io/kv";
import { isRevisionConflict, type Delivery } from "@trias/bus";
import {
  EXECUTION_RESERVE_BYTES,
  GateError,
  ValidationError,
  isArgsRef,
  MAX_FRAME_BYTES,
  executionBound,
  frameRef,
  assignmentFilter,
  boundedAdd,
  boundedSet,
  decode,
  encode,
  subjectFor,
  type JsonObject,
  type JsonValue,
  type StepExecuted,
  type Tier,
  type TraceContext,
} from "@trias/protocol";
import { checkArgumentSize, unknownRun, type LoadedPolicy } from "@trias/policy";
import { afterClose } from "@trias/runstate";
import { ToolRefusal, type Catalogue, type ToolDef } from "@trias/tools";
import { SpanKind, setActiveAttribute, triasAttributes, withSpan } from "@trias/telemetry";
import {
  EFFECTS_BUCKET,
  checkCompensationOrder,
  faultPoint,
  resolveResult,
  resultKey,
  resultRef,
  openAssignment,
  openVerdict,
  type AgentHost,
  type HandlerResult,
  type Incoming,
  type OpenedAssignment,
  type OpenedVerdict,
} from "@trias/runtime";
import { checkScope, checkStep, type GateDecision } from "./gate.js";
import {
  ASSIGNMENT_MAX_DELIVER,
  CACHE_ENTRIES,
  FIRST_SIGHT_SLACK_MS,
  MAX_ERROR_CHARS,
  MAX_RETRY_DELAY_MS,
  MAX_STORED_RESULT_BYTES,
  WINDOW_CLOSE_SLACK_MS,
} from "./config.js";

export { EFFECTS_BUCKET };

interface StepCase {
  assignment: OpenedAssignment;
  /**
   * The arguments the gate judges and the tool runs on: the proposal's own, or, when it
   * carries them by reference, the bytes read back and checked (null until then, and again
   * once the step is refused: only steps waiting for their quorum hold large arguments).
   */
  args: JsonObject | null;
  approvals: Map<string, { verdict: OpenedVerdict; seq: number }>;
  veto: string | null;
  hydrated: boolean;
  /** The gate refused the step (and that was recorded once): later messages for it change nothing. */
  refused: boolean;
}

interface RunOnce {
  key: string;
  firstSight?: boolean;
  emitId: string;
  run: string;
  step: number;
  attempt: number;
  trace: TraceContext | null;
  tool: ToolDef;
  args: JsonObject;
  tier: Tier;
  policyDigest: string;
  effectId: string;
  /** An upper bound of the record's size without its result (gate.ts executionBound). */
  reserved: number;
  /**
   * The id of the order that asked for this effect (compensations): a claim or a record
   * made under another order's id means that order is refused, not run again.
   */
  order?: string;
  body: (r: { outcome: "ok" | "error"; result: JsonValue; error: string | null }) => StepExecuted;
}

type EffectRecord =
  | { status: "started"; at: number; by: string; order?: string }
  | { status: "done"; frame: Uint8Array; order?: string }
  | { status: "vetoed"; reason: string; order?: undefined }
  /** Under `<run>.quarantine` after a rollback order: no further step, compensations only. */
  | { status: "rolling_back"; reason: string; order?: undefined };

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
  /** Runs under a rollback order: no further step executes, their compensations do. */
  readonly #rollingBack = new Set<string>();
  /** Effect keys of steps this process saw through (bounded): late verdicts stop here. */
  readonly #done = new Set<string>();
  /** Runs found not quarantined in the effects bucket (see #checkNotQuarantined). */
  readonly #clean = new Set<string>();
  /**
   * Runs the trace showed open (no run_closed) at one of their steps, and since then nothing
   * seen here could have preceded a close: no recovery order, no veto, no refusal, not the
   * plan's last step. Only those skip the lookup (see #checkNotClosed).
   */
  readonly #open = new Set<string>();
  /**
   * Effects being run by a handler of this process, by effect key. Handlers run concurrently
   * (assignments, verdicts and orders are separate consumers): a second one that met the
   * first's "started" claim would run the tool again and record a frame it signed itself,
   * which the server drops as a duplicate, so the record would no longer be byte for byte
   * the execution in the trace and every compensation order of it would be refused.
   */
  readonly #running = new Map<string, Promise<boolean>>();
  #startedAt = Number.MAX_SAFE_INTEGER;

  constructor(host: AgentHost, policy: LoadedPolicy, tools: Catalogue, effects: KV) {
    this.#host = host;
    this.#policy = policy;
    this.#tools = tools;
    this.#effects = effects;
    // Runs now handled by another replica (docs/scaling.md, section 2): what this process
    // learnt of them may be stale; each fact is looked up again if the runs come back.
    host.onRunsMoved((moved) => {
      for (const [k, c] of this.#cases) if (moved(c.assignment.message.run)) this.#cases.delete(k);
      for (const set of [this.#quarantined, this.#rollingBack, this.#clean, this.#open])
        for (const run of set) if (moved(run)) set.delete(run);
      for (const k of this.#done) if (moved(k.slice(0, k.indexOf(".")))) this.#done.delete(k);
    });
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

  /**
   * The gate (gate.ts) over what this process holds of the step. The run facts are lower
   * bounds (no trace read on the hot path): the policy's own requirement for the step's
   * facts is never undercut, and floors the router saw above it are taken from the
   * assignment; the verifier re-derives with the whole run (docs/security.md).
   */
  #gate(c: StepCase, windowClosed: boolean): GateDecision {
    const a = c.assignment;
    const m = a.message;
    const p = a.proposal.message;
    const approvals: OpenedVerdict[] = [];
    for (const x of c.approvals.values()) approvals.push(x.verdict);
    const params = this.#policy.doc.tiers[m.body.tier];
    // Resolved before any gate call (#resolveArgs); a reference is never judged as arguments.
    if (c.args === null)
      return { kind: "refuse", code: "internal", reason: "the step's arguments were not read" };
    return checkStep({
      policy: this.#policy,
      assignment: m.body,
      step: {
        tool: p.body.tool,
        args: c.args,
        run: m.run,
        step: m.step ?? 0,
        attempt: m.attempt,
      },
      view: unknownRun(),
      approvals,
      veto: c.veto,
      windowClosed,
      windowMs: m.body.requires.human ? params.humanTimeoutMs : params.reviewTimeoutMs,
      executionBytes: executionBound(m.body.proposal.length, approvals.length),
      maxFrameBytes: MAX_FRAME_BYTES,
      catalogue: this.#tools,
    });
  }

  /**
   * Arguments carried by reference, read once per step (docs/security.md, "Bounded messages
   * end to end"): bounded by this executor's policy before a byte is read, then checked
   * against their digest, which the assignment and every approval bind. A step denied by the
   * router is never run, so its arguments are not read.
   */
  async #resolveArgs(c: StepCase): Promise<void> {
    const a = c.assignment.message;
    const wire = c.assignment.proposal.message.body.args;
    if (a.body.denied !== null) {
      c.args = wire;
      return;
    }
    const refusal = checkArgumentSize(this.#policy, wire);
    if (refusal !== null) this.#refuse(c, { code: "payload_too_large", reason: refusal });
    try {
      c.args = await this.#host.payloads.resolve(wire);
    } catch (e) {
      if (e instanceof ValidationError)
        this.#refuse(c, { code: "payload_unavailable", reason: e.message });
      throw e;
    }
  }

  /** A refusal is recorded once (by the message that met it); the step then stays refused here. */
  #refuse(c: StepCase, d: { code: GateError["code"]; reason: string }): never {
    c.refused = true;
    // A refused case stays cached (later messages for it change nothing): without the
    // arguments read back for it, so large arguments do not accumulate in memory.
    if (isArgsRef(c.assignment.proposal.message.body.args)) c.args = null;
    this.#open.delete(c.assignment.message.run);
    throw new GateError(d.code, d.reason);
  }

  #case(a: OpenedAssignment): StepCase {
    const key = a.message.body.digest;
    let c = this.#cases.get(key);
    if (!c) {
      const args = a.proposal.message.body.args;
      c = {
        assignment: a,
        args: isArgsRef(args) ? null : args,
        approvals: new Map(),
        veto: null,
        hydrated: false,
        refused: false,
      };
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
    const c = this.#case(a);
    if (c.refused) return;
    if (c.args === null) await this.#resolveArgs(c);
    const { requires, denied } = a.message.body;
    if (requires.reviewers === 0 && !requires.human && denied === null) {
      await this.#tryExecute(c, true, this.#firstSight(a.message.issuedAt, inc.delivery));
      return;
    }
    // Refusals that need no verdict (policy digest, a downgrade) before anything is read.
    const pre = this.#gate(c, false);
    if (pre.kind === "refuse") this.#refuse(c, pre);
    if (pre.kind === "skip") return;
    // A step waiting for reviewers: this message doubles as a durable timer. It is
    // redelivered when the review window closes; if nothing ran by then, the step is refused.
    if (this.#done.has(effectKey(a))) return;
    // Only a step routed before this process started, or a redelivery, can have run
    // without this process knowing: only then ask the effects bucket.
    if (!this.#firstSight(a.message.issuedAt, inc.delivery) && (await this.#effect(a))) return;
    // Vetoed here already (the verdict came first): recorded as such, nothing more to do.
    if (c.veto !== null) return;
    await this.#hydrate(c, inc.delivery);
    const params = this.#policy.doc.tiers[a.message.body.tier];
    const windowMs = requires.human ? params.humanTimeoutMs : params.reviewTimeoutMs;
    const left = a.message.issuedAt + windowMs - this.#host.now();
    const r = await this.#tryExecute(c, left <= 0);
    if (r === "waiting")
      return { retryInMs: Math.min(left + WINDOW_CLOSE_SLACK_MS, MAX_RETRY_DELAY_MS) };
    return;
  }

  async onVerdict(inc: Incoming): Promise<void> {
    const { verdict, assignment } = openVerdict(this.#host.registry, inc.delivery.data);
    // A veto can close the run (rejected): its next step looks the close up again.
    if (verdict.message.body.decision !== "approve") this.#open.delete(assignment.message.run);
    const c = this.#case(assignment);
    if (c.refused) return;
    if (c.args === null) {
      // A late verdict of a step this process ran (its case, and the arguments read back for
      // it, are gone): nothing to do, so nothing to read.
      if (this.#done.has(effectKey(assignment))) return;
      await this.#resolveArgs(c);
    }
    const pre = this.#gate(c, false);
    if (pre.kind === "refuse") this.#refuse(c, pre);
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
    await this.#tryExecute(c, false);
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
    // From the run's start, not a scan of the trace (Bus.readRun, docs/scaling.md).
    const read = await this.#host.bus.readRun(m.run, { filter: `trias.*.verdict.${m.run}` });
    if (read.fallback !== null && read.messages.length > 0)
      this.#host.log.warn(
        { run: m.run, why: read.fallback },
        "verdicts read from the start of the trace",
      );
    for (const stored of read.messages) {
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
   * Runs the step when the gate says so: "ran" when it has executed (now or before),
   * "waiting" while its quorum may still come, "skipped" when it never will run here.
   * `firstSight`: the step's assignment is on its first sight here (see #firstSight), so no
   * claim is needed.
   */
  async #tryExecute(
    c: StepCase,
    windowClosed: boolean,
    firstSight = false,
  ): Promise<"ran" | "waiting" | "skipped"> {
    const d = this.#gate(c, windowClosed);
    if (d.kind === "refuse") this.#refuse(c, d);
    if (d.kind === "wait") return "waiting";
    if (d.kind === "skip") return "skipped";
    const a = c.assignment;
    const m = a.message;
    const q = d.quorum;
    const resolved = c.args;
    if (resolved === null)
      this.#refuse(c, { code: "internal", reason: "the step's arguments were not read" });
    // A quarantine, a rollback or a close follows an execution or a person's cancel: the
    // run's very first step can be under one only while it waits for a person (and its
    // effect id is taken once it ran).
    if (m.step !== 0 || m.attempt !== 0 || m.body.requires.human)
      await Promise.all([this.#checkNotQuarantined(m.run, true), this.#checkNotClosed(m.run)]);
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
      tool: this.#tool(proposal.tool),
      // The tool runs on the bytes the quorum bound; the record carries the proposal's form.
      args: resolved,
      tier: m.body.tier,
      policyDigest: m.body.policyDigest,
      effectId: `${m.run}:${step}:${m.attempt}`,
      reserved: executionBound(m.body.proposal.length, c.approvals.size),
      body: (r) => ({
        digest: m.body.digest,
        tool: proposal.tool,
        args: proposal.args,
        tier: m.body.tier,
        ...r,
        approvals: q.counted,
        effectId: `${m.run}:${step}:${m.attempt}`,
        // By digest, never embedded: the frames are in the run's trace, and embedding them
        // would repeat the arguments once per frame (docs/receipts.md, 3).
        evidence: {
          assignment: frameRef(a.bytes),
          // Every approval that made the quorum, the human's included, so the verifier can
          // re-count it on its own.
          approvals: [...c.approvals.values()]
            .filter(
              (x) =>
                q.counted.includes(x.verdict.key.kid) ||
                x.verdict.message.body.strategy === "human",
            )
            .map((x) => frameRef(x.verdict.bytes)),
        },
        compensationOf: null,
        index: proposal.index,
        total: proposal.total,
      }),
    });
    if (!ran) return "skipped";
    // Done: the effects bucket answers for this step from now on, not memory; after the
    // plan's last step, for the run too.
    this.#cases.delete(m.body.digest);
    boundedAdd(this.#done, effectKey(a), CACHE_ENTRIES);
    if (proposal.index + 1 >= proposal.total) {
      this.#clean.delete(m.run);
      this.#open.delete(m.run);
    }
    return "ran";
  }

  /**
   * The frame the trace holds for this effect's announcement, which the server kept when it
   * dropped `sent` as a duplicate (see #runOnceNow); `sent`'s own bytes if it holds none.
   */
  async #announced(
    x: RunOnce,
    sent: { id: string; seq: number; bytes: Uint8Array },
  ): Promise<Uint8Array> {
    const seq = sent.seq;
    const stored = await this.#host.bus.messageAt(seq);
    if (!stored) return sent.bytes;
    // Another executor's (a replica, or this identity before a restart) counts; anything else
    // under this message id is not this effect's announcement.
    const opened = this.#host.registry.open(stored.data, MAX_FRAME_BYTES, stored.timestampMs);
    const announced = opened.message;
    if (
      announced.id !== sent.id ||
      announced.kind !== "step_executed" ||
      opened.key.role !== "executor"
    ) {
      this.#host.log.warn(
        { run: x.run, seq, id: announced.id },
        "the stored announcement is not this effect's: its record keeps this process's frame",
      );
      return sent.bytes;
    }
    return stored.data;
  }

  /** The gate checked the tool is in the catalogue; a missing one here is a bug, not input. */
  #tool(name: string): ToolDef {
    const t = this.#tools.get(name);
    if (!t)
      throw new GateError("scope_denied", `tool "${name}" is not in this gateway's tool pack`);
    return t;
  }

  /**
   * Idempotency, then the effect (the gate checked scope): the tool runs at most once per effect id.
   * The outcome is recorded durably (effects bucket) before the message that triggered it
   * is acked; a finished effect is only re-announced, with the same message id, which the
   * server drops as a duplicate.
   */
  async #runOnce(x: RunOnce): Promise<boolean> {
    // One at a time per effect in this process: a later handler waits for the first, then
    // finds its "done" record (republished as it is, or an order refused as already applied).
    for (let w = this.#running.get(x.key); w; w = this.#running.get(x.key))
      await w.catch(() => undefined);
    const p = this.#runOnceNow(x);
    this.#running.set(x.key, p);
    try {
      return await p;
    } finally {
      this.#running.delete(x.key);
    }
  }

  async #runOnceNow(x: RunOnce): Promise<boolean> {
    const tool = x.tool;

    // Claim first (one round trip on the happy path); only a failed claim reads the record.
    // A step on its first sight cannot have run: its claim would only ever succeed, so the
    // outcome record below is created instead, and a record already there (a replay of the
    // assignment that outlived the replay window) is left as it is.
    let claimed = true;
    /** A claim found "started": the effect may have been announced before, its record lost. */
    let resumed = false;
    if (!x.firstSight) {
      try {
        await this.#effects.create(
          x.key,
          encode({
            status: "started",
            at: this.#host.now(),
            by: this.#host.name,
            ...(x.order !== undefined ? { order: x.order } : {}),
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
      if (x.order !== undefined && prior?.order !== undefined && prior.order !== x.order) {
        throw new GateError(
          "already_executed",
          `${tool.name} (${x.effectId}) was already applied on order ${prior.order}: each effect is compensated at most once, whatever the number of orders`,
        );
      }
      if (prior?.status === "done") {
        await this.#republish(prior.frame, x.run);
        return true;
      }
      if (prior?.status === "vetoed") return false;
      // "started": a crash after the claim (or a replica mid-way). The tool's effect is keyed
      // by the effect id, so running it again applies nothing twice.
      resumed = true;
    }
    faultPoint(this.#host.name, "after-claim");
    let outcome: "ok" | "error" = "ok";
    let result: JsonValue = null;
    let error: string | null = null;
    try {
      result = await withSpan(
        `tool ${tool.name}`,
        () => ({
          kind: SpanKind.CLIENT,
          attributes: triasAttributes({
            run: x.run,
            step: x.step,
            attempt: x.attempt,
            tier: x.tier,
            tool: tool.name,
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
    // A result that would not fit the record travels by digest, its bytes in the effects
    // bucket first: the record always fits, so the run is always verified (DESIGN.md, 12).
    if (error !== null && error.length > MAX_ERROR_CHARS)
      error = `${error.slice(0, MAX_ERROR_CHARS)}…`;
    if (outcome === "ok" && result !== null) {
      const encoded = encode(result);
      if (x.reserved + encoded.length + EXECUTION_RESERVE_BYTES > MAX_FRAME_BYTES) {
        const stored = encoded.length <= MAX_STORED_RESULT_BYTES;
        if (stored) await this.#effects.put(resultKey(x.key), encoded);
        result = resultRef(resultKey(x.key), encoded, stored) as unknown as JsonValue;
      }
    }
    // Announce and record at once (one round trip, not two): either may land without the
    // other if the process dies here, and the redelivery repairs both. A record without its
    // message is republished from the record; a message without its record runs the tool
    // again under the same effect id (applies nothing twice) and announces it under the same
    // message id (dropped by the server as a duplicate).
    const record = (frame: Uint8Array) => {
      const done = encode({
        status: "done",
        frame,
        ...(x.order !== undefined ? { order: x.order } : {}),
      } satisfies EffectRecord);
      return this.#effects.put(x.key, done);
    };
    const sent = await this.#host.emit("step_executed", {
      id: x.emitId,
      run: x.run,
      step: x.step,
      attempt: x.attempt,
      body: x.body({ outcome, result, error }),
      trace: x.trace,
      // Resumed, the record waits for the server's answer (see below): this rare path pays
      // the second round trip.
      alongside: async (frame) => {
        if (resumed) return undefined;
        if (!x.firstSight) return record(frame);
        try {
          return await this.#effects.create(
            x.key,
            encode({
              status: "done",
              frame,
              ...(x.order !== undefined ? { order: x.order } : {}),
            } satisfies EffectRecord),
          );
        } catch (e) {
          if (!isRevisionConflict(e)) throw e;
          return undefined;
        }
      },
    });
    // Announced before, by a process that died before its record landed: the server kept that
    // frame and dropped this re-signed one (same message id, another issuedAt). The record must
    // hold the frame the trace holds, byte for byte, or a compensation order, whose evidence is
    // the trace's frame, would be refused and the run quarantined instead of rolled back.
    if (resumed) await record(sent.duplicate ? await this.#announced(x, sent) : sent.bytes);
    faultPoint(this.#host.name, "after-record");
    return true;
  }

  /** `step`: a step of the plan, which a rollback order stops too (not a compensation). */
  async #checkNotQuarantined(run: string, step = false): Promise<void> {
    // A quarantine recorded before this process started is only in the effects bucket; one
    // ordered since is in memory too (this process records it). So the bucket is asked once
    // per run, not once per step.
    if (!this.#quarantined.has(run) && !this.#rollingBack.has(run) && !this.#clean.has(run)) {
      const e = await this.#effects.get(`${run}.quarantine`);
      if (e && e.operation === "PUT" && e.value.length > 0) {
        const r = decode(e.value) as EffectRecord;
        (r.status === "rolling_back" ? this.#rollingBack : this.#quarantined).add(run);
      } else boundedAdd(this.#clean, run, CACHE_ENTRIES);
    }
    if (this.#quarantined.has(run))
      throw new GateError("run_quarantined", `run ${run} is quarantined: nothing more executes`);
    if (step && this.#rollingBack.has(run))
      throw new GateError(
        "run_quarantined",
        `run ${run} is being rolled back: no further step executes, only compensations`,
      );
  }

  /**
   * A closed run stays closed (docs/receipts.md, "After the receipt"): no step of it runs
   * after its run_closed is stored, whoever assigned it. Asked of the stream (one lookup by
   * subject, beside the quarantine check) for a run's first step after its first, and again
   * after anything seen here that can precede a close between two steps: a recovery order
   * (failure, cancel), a veto, a refusal (a roll-out), the plan's last step. Between those the
   * run is known open: the lookup cost about 0.12 ms of executor CPU per light step
   * (docs/performance.md).
   */
  async #checkNotClosed(run: string): Promise<void> {
    if (this.#open.has(run)) return;
    const stored = await this.#host.bus.lastBySubject(subjectFor("verifier", "run_closed", run));
    if (!stored) {
      boundedAdd(this.#open, run, CACHE_ENTRIES);
      return;
    }
    // Only a verifier's signed close counts: a frame that does not open closes nothing.
    let opened;
    try {
      opened = this.#host.registry.open(stored.data, MAX_FRAME_BYTES, stored.timestampMs);
    } catch {
      return;
    }
    const closed = opened.message;
    if (opened.key.role !== "verifier" || closed.kind !== "run_closed" || closed.run !== run)
      return;
    const reason = afterClose(
      {
        closed: { seq: stored.seq },
        status: closed.body.outcome === "quarantined" ? "quarantined" : "closed",
      },
      "step_executed",
    );
    if (reason !== null) throw new GateError("run_closed", reason);
  }

  /** Signed recovery orders: compensations to run, and quarantines to enforce. */
  async onRecovery(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "recovery_decided") return;
    // Any recovery can end in a close: the run's next step looks the close up again.
    this.#open.delete(m.run);
    if (m.body.action === "quarantine") {
      this.#quarantined.add(m.run);
      await this.#effects.put(
        `${m.run}.quarantine`,
        encode({ status: "vetoed", reason: m.body.reason } satisfies EffectRecord),
      );
      return;
    }
    if (m.body.action === "rollback") {
      // From here the run only compensates (transitions.ts: rolling_back); a step still
      // waiting for review (a person's cancel) must not run. Never weakens a quarantine.
      this.#rollingBack.add(m.run);
      this.#clean.delete(m.run);
      try {
        await this.#effects.create(
          `${m.run}.quarantine`,
          encode({ status: "rolling_back", reason: m.body.reason } satisfies EffectRecord),
        );
      } catch (e) {
        if (!isRevisionConflict(e)) throw e;
      }
      return;
    }
    if (m.body.action !== "compensate") return;
    await this.#checkNotQuarantined(m.run);
    const c = m.body.compensation;
    if (!c || !m.body.evidence)
      throw new GateError(
        "scope_denied",
        "a compensate order must name the compensation and the effect it undoes",
      );
    // The effect is the one this executor recorded, not the order's word for it: the frame
    // the order names must be byte for byte the one this process stored when it ran the step.
    const frame = await this.#executedFrame(m.run, c.step, m.attempt, m.body.evidence);
    const original = this.#host.registry.open(frame).message;
    if (original.kind !== "step_executed")
      throw new GateError("scope_denied", "a compensate order's evidence must be an execution");
    const key = keyOf(original);
    const own = await this.#effects.get(key);
    const record =
      own && own.operation === "PUT" && own.value.length > 0
        ? (decode(own.value) as EffectRecord)
        : null;
    if (record?.status !== "done" || !sameBytes(record.frame, frame)) {
      throw new GateError(
        "scope_denied",
        `this executor has no record of the effect ${original.body.effectId} the order would undo`,
      );
    }
    const undone = await resolveResult(this.#effects, original.body.result);
    // The effect's own arguments, read back when it carried them by reference: the undo is
    // derived from what ran, and the order may name the undo's arguments by reference too.
    const ran = await this.#host.payloads.resolve(original.body.args);
    const declared = this.#tools.get(original.body.tool)?.compensate(ran, undone) ?? null;
    const check = checkCompensationOrder({ run: m.run, compensation: c }, original, declared);
    if (!check.ok) throw new GateError(check.code, check.reason);
    // checkCompensationOrder accepts no order without a declared undo: this only narrows.
    if (!declared) throw new GateError("scope_denied", "the effect declares no compensation");
    const scope = checkScope(this.#policy, this.#tools, c.tool, declared.args);
    if (scope) throw new GateError("scope_denied", scope);
    // Keyed by the effect, not the order: each effect is compensated at most once.
    const ckey = `${key}.c`;
    const effectId = `${original.body.effectId}:c`;
    const step = c.step;
    await this.#runOnce({
      key: ckey,
      emitId: `comp-${m.run}-${step}-${original.attempt}`,
      run: m.run,
      step,
      attempt: original.attempt,
      trace: m.trace,
      tool: this.#tool(c.tool),
      // What the tool pack declares, which the order names (inline or by reference).
      args: declared.args,
      tier: original.body.tier,
      policyDigest: this.#policy.digest,
      effectId,
      // The compensation's arguments are in the order's frame.
      reserved: executionBound(inc.delivery.data.length, 0),
      order: m.id,
      body: (r) => ({
        digest: c.of,
        tool: c.tool,
        args: c.args,
        tier: original.body.tier,
        ...r,
        approvals: [],
        effectId,
        // The signed order, which names the effect it undoes.
        evidence: { assignment: frameRef(inc.delivery.data), approvals: [] },
        compensationOf: c.of,
        index: c.step,
        total: original.body.total,
      }),
    });
  }

  /**
   * The execution frame a compensate order names by digest (frameRef): this executor's record
   * of the step at the order's attempt (the usual case, no trace read), else the run's trace.
   */
  async #executedFrame(
    run: string,
    step: number,
    attempt: number,
    ref: string,
  ): Promise<Uint8Array> {
    const own = await this.#effects.get(keyOf({ run, step, attempt }));
    const record =
      own && own.operation === "PUT" && own.value.length > 0
        ? (decode(own.value) as EffectRecord)
        : null;
    if (record?.status === "done" && frameRef(record.frame) === ref) return record.frame;
    const filter = subjectFor("executor", "step_executed", run);
    for (const s of (await this.#host.bus.readRun(run, { filter })).messages)
      if (frameRef(s.data) === ref) return s.data;
    throw new GateError(
      "scope_denied",
      `this executor has no record of the effect ${ref.slice(0, 12)} the order would undo`,
    );
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

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
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
