import { classifyFailure, failureAction, isTransientFailure, type StoredMessage } from "@trias/bus";
import {
  boundedAdd,
  GateError,
  ValidationError,
  isArgsRef,
  type JsonObject,
  boundedSet,
  frameRef,
  TransientError,
  subjectFor,
  type Check,
  type Message,
  type MessageOf,
  type RunOutcome,
  type Topology,
  type VerificationVerdict,
  runOfSubject,
} from "@trias/protocol";
import type { LoadedPolicy, TierParams } from "@trias/policy";
import {
  assessTopology,
  ReceiptChain,
  advance,
  afterClose,
  foldRun,
  linearBaseline,
  topologyMetrics,
  type RunState,
  type TraceEvent,
} from "@trias/runstate";
import type { Catalogue } from "@trias/tools";
import {
  openAssignment,
  resolveResult,
  type AgentHost,
  type DeclaredUndo,
  type Incoming,
  type ResultStore,
} from "@trias/runtime";
import { metrics, recordRecovery, setActiveAttribute } from "@trias/telemetry";
import { auditCompensation, auditExecution, type FrameLookup } from "./audit.js";
import type { Decision, EffectUndo } from "./recovery.js";
import { needsUndo, react, runView } from "./react.js";
import { TOOL_SUCCEEDED } from "./reasons.js";
import type { ReceiptAnchor } from "./anchor.js";
import type { PendingIndex } from "./pending.js";

/** The check recorded when a tool's postconditions could not be read at all. */
export const POSTCONDITIONS_UNREADABLE = "postconditions readable";

/**
 * Pure: a verification verdict from checks. Under `strict` verification (the default) a step
 * whose postconditions could not be read is uncertain, never passed, and goes to recovery.
 * Under `lenient` (a tier's policy choice) that one check may fail and the step still
 * passes; a postcondition read and found wrong, or a failed authorisation check, fails the
 * step under either.
 */
export function verdictOf(
  outcome: "ok" | "error",
  checks: readonly Check[],
  uncertain: boolean,
  verification: TierParams["verification"] = "strict",
): VerificationVerdict {
  if (outcome === "error") return "failed";
  if (uncertain) {
    const tolerated =
      verification === "lenient" &&
      checks.every((c) => c.ok || c.name === POSTCONDITIONS_UNREADABLE);
    return tolerated ? "passed" : "uncertain";
  }
  return checks.every((c) => c.ok) ? "passed" : "failed";
}

interface RunCache {
  state: RunState;
  /**
   * Frames a later record names by frameRef: the current step's assignments, verdicts and
   * orders, and the run's executions (a compensate order names one). Those over
   * MAX_CACHED_FRAME_BYTES, and any missed, are read back from the trace.
   */
  frames: Map<string, { kind: string; data: Uint8Array }>;
  /** Highest stream sequence handled (applied or found illegal). */
  seen: number;
  /** The receipt chain over every stored message of the run so far, refused ones too. */
  chain: ReceiptChain;
}

/**
 * Runs kept in memory; a run evicted (or closed) is folded again from the stream if needed.
 * A run of 20 steps holds about 56 KB (state and receipt chain) and its executions' frames
 * (about 1 KB each with small results, never over MAX_CACHED_FRAME_BYTES), so this stays
 * inside the agents' 128 MB old-generation ceiling.
 */
const MAX_OPEN_RUNS = 1_000;

/**
 * A frame larger than this (a step with large arguments) is not kept for its execution's
 * audit: it is read back from the trace then, so memory stays bounded by small frames.
 * @default 16_384 bytes
 */
const MAX_CACHED_FRAME_BYTES = 16 * 1024;

/** How the handling of one event ended: done, to be redelivered, or refused for good. */
export type HandlingOutcome = "handled" | "retried" | "refused";

/**
 * The event of a run whose handling failed and waits for its redelivery, once the handling
 * of event `seq` ended with `outcome` (`failed`: the one waited for before). The run's later
 * events wait (retried) until that one is handled: folding them first would count it as seen,
 * and its reaction (a step's verification, a close) would never happen, leaving the run open.
 * A failure anywhere counts, not only in the reaction: a redelivery whose re-read of the run
 * timed out used to clear the wait, and a later event then folded past it (docs/scaling.md,
 * section 1). A refused event will not come back: it no longer holds the run.
 */
export function failedAfter(
  failed: number | undefined,
  seq: number,
  outcome: HandlingOutcome,
): number | undefined {
  if (outcome === "retried") return failed === undefined ? seq : Math.min(failed, seq);
  return failed === seq ? undefined : failed;
}

/** Kinds of frames a later record names by frameRef (docs/receipts.md, 3). */
const EVIDENCE_KINDS: ReadonlySet<string> = new Set([
  "tier_assigned",
  "verdict",
  "recovery_decided",
  "step_executed",
]);

/** Runs remembered as "first stored message refused" (a junk flood names a new run per frame). */
const MAX_REFUSED_FIRST = 5_000;

/**
 * Sealed runs remembered (run -> its run_closed), so a message for one is refused without
 * folding the run again; past this many the fold (which also refuses it) answers.
 * About 100 bytes each.
 * @default 10_000
 */
const MAX_SEALED_RUNS = 10_000;

/**
 * The verifier follows the whole trace in stream order (one consumer, every subject) and
 * folds each run with the shared state machine. Its decisions are a function of that state
 * and the event at hand: verify an execution, then on its own verification decide what
 * follows (next step, retry, rollback, escalate, close). Each decision is a signed event
 * whose id derives from the event that caused it, so a redelivery changes nothing.
 */
export class Verifier {
  readonly #host: AgentHost;
  readonly #tools: Catalogue;
  readonly #policy: LoadedPolicy;
  /** The executor's bucket, read-only: results that travelled by digest are read from it. */
  readonly #effects: ResultStore | null;
  readonly #runs = new Map<string, RunCache>();
  /** Runs whose first stored message was refused: their history must come from the stream. */
  readonly #refusedFirst = new Set<string>();
  /** Run -> the event whose handling failed and waits for its redelivery (failedAfter). */
  readonly #failed = new Map<string, number>();
  /** Runs whose run_closed this process applied: seq and whether the run was quarantined. */
  readonly #sealed = new Map<string, { seq: number; status: "closed" | "quarantined" }>();
  /** Where closed runs' receipts are chained; null without the receipts bucket. */
  readonly #anchor: ReceiptAnchor | null;
  /** When this process started consuming: a close stored after it cannot be anchored yet. */
  #startedAt = Number.MAX_SAFE_INTEGER;
  /** Runs waiting for a person, for `trias pending`; null without the pending bucket. */
  readonly #pending: PendingIndex | null;

  constructor(
    host: AgentHost,
    tools: Catalogue,
    policy: LoadedPolicy,
    anchor: ReceiptAnchor | null = null,
    effects: ResultStore | null = null,
    pending: PendingIndex | null = null,
  ) {
    this.#host = host;
    this.#tools = tools;
    this.#policy = policy;
    this.#anchor = anchor;
    this.#effects = effects;
    this.#pending = pending;
    // Runs now handled by another replica (docs/scaling.md, section 2): folded from the
    // trace again if they come back. Closed runs (#sealed) stay closed.
    host.onRunsMoved((moved) => {
      for (const m of [this.#runs, this.#failed])
        for (const run of m.keys()) if (moved(run)) m.delete(run);
      for (const run of this.#refusedFirst) if (moved(run)) this.#refusedFirst.delete(run);
    });
  }

  async start(): Promise<void> {
    this.#startedAt = this.#host.now();
    await this.#host.listen("verifier", "trias.>", (inc) => this.onMessage(inc), {
      batch: 128,
      onRefused: (d) => {
        const cached = this.#runs.get(runOfSubject(d.subject));
        if (cached) cached.chain.add({ seq: d.seq, subject: d.subject, frame: d.data });
        else boundedAdd(this.#refusedFirst, runOfSubject(d.subject), MAX_REFUSED_FIRST);
      },
    });
  }

  /**
   * The run's state up to (not including) `seq`. A run's first message needs no history; a
   * run this process has not followed (a restart, an eviction) is folded from the stream.
   */
  async #load(run: string, seq: number, first: boolean, record = false): Promise<RunCache> {
    const cached = this.#runs.get(run);
    if (cached) return cached;
    const c: RunCache = {
      state: foldRun([], run),
      frames: new Map(),
      seen: seq - 1,
      chain: new ReceiptChain(run),
    };
    // A rejection record about a run never submitted (junk naming a new run per frame) has
    // no history to fold: one direct read says so, instead of a scan of the stream per record.
    const unknown =
      record &&
      (await this.#host.bus.lastBySubject(subjectFor("console", "task_submitted", run))) === null;
    if (!unknown && (!first || this.#refusedFirst.delete(run))) {
      const events: TraceEvent[] = [];
      for (const stored of await this.#readRun(run)) {
        if (stored.seq >= seq) break;
        c.chain.add({ seq: stored.seq, subject: stored.subject, frame: stored.data });
        const ev = this.#event(stored);
        if (ev) {
          events.push(ev);
          keepFrame(c.frames, ev.message.kind, stored.data);
        }
      }
      c.state = foldRun(events, run);
    }
    boundedSet(this.#runs, run, c, MAX_OPEN_RUNS);
    return c;
  }

  /** The run's stored messages from its start, not a scan of the trace (Bus.readRun). */
  async #readRun(run: string): Promise<StoredMessage[]> {
    const r = await this.#host.bus.readRun(run);
    if (r.fallback !== null && r.messages.length > 0)
      this.#host.log.warn({ run, why: r.fallback }, "run read from the start of the trace");
    return r.messages;
  }

  #event(stored: StoredMessage): TraceEvent | null {
    try {
      return {
        seq: stored.seq,
        subject: stored.subject,
        frame: stored.data,
        message: this.#host.registry.open(stored.data).message,
      };
    } catch {
      return null;
    }
  }

  async onMessage(inc: Incoming): Promise<void> {
    const m = inc.message;
    const seq = inc.delivery.seq;
    // An erasure record (docs/privacy.md) is a run of one signed message: nothing to verify.
    if (m.kind === "subject_erased") return;
    const failed = this.#failed.get(m.run);
    if (failed !== undefined && seq > failed)
      throw new TransientError(
        "timeout",
        `run ${m.run}: waiting for the redelivery of event ${failed}, whose handling failed`,
      );
    let outcome: HandlingOutcome = "handled";
    try {
      await this.#handle(inc);
    } catch (e) {
      outcome =
        failureAction(classifyFailure(e), inc.delivery.deliveryCount).type === "retry"
          ? "retried"
          : "refused";
      // The cached state may already count this event as seen: forget it, so the
      // redelivery folds the run from the stream and handles the event again.
      if (outcome === "retried") this.#runs.delete(m.run);
      throw e;
    } finally {
      const next = failedAfter(this.#failed.get(m.run), seq, outcome);
      if (next === undefined) this.#failed.delete(m.run);
      else boundedSet(this.#failed, m.run, next, MAX_OPEN_RUNS);
    }
  }

  async #handle(inc: Incoming): Promise<void> {
    const m = inc.message;
    const seq = inc.delivery.seq;
    // Before any check that skips a redelivery: a failed write is written again then.
    await this.#pending?.observe(m, seq);
    const sealed = this.#sealed.get(m.run);
    if (sealed !== undefined && seq > sealed.seq) {
      // A closed run stays closed (docs/receipts.md, "After the receipt"): refusals and slow
      // verdicts change nothing and are let be; anything else gets a signed refusal.
      const reason = afterClose({ closed: sealed, status: sealed.status }, m.kind);
      if (reason !== null) throw new GateError("run_closed", reason);
      return;
    }
    let c = await this.#load(
      m.run,
      seq,
      m.kind === "task_submitted",
      m.kind === "message_rejected",
    );
    if (seq <= c.seen) return;
    c.chain.add({ seq, subject: inc.delivery.subject, frame: inc.delivery.data });
    const before = c.state.violations.length;
    // In place: this process owns the run's state, so no copy per event is needed.
    if (
      !advance(c.state, {
        seq,
        subject: inc.delivery.subject,
        frame: inc.delivery.data,
        message: m,
      })
    ) {
      this.#runs.delete(m.run);
      c = await this.#load(m.run, seq + 1, false);
    }
    c.seen = seq;
    keepFrame(c.frames, m.kind, inc.delivery.data);
    const violation = c.state.violations.length > before ? c.state.violations.at(-1) : undefined;
    // A run sealed before this process followed it (a restart, an eviction): the fold refuses.
    if (violation?.code === "run_closed") throw new GateError("run_closed", violation.reason);
    if (m.kind === "run_closed") {
      this.#runs.delete(m.run);
      if (violation) return;
      boundedSet(
        this.#sealed,
        m.run,
        { seq, status: c.state.status === "quarantined" ? "quarantined" : "closed" },
        MAX_SEALED_RUNS,
      );
      // Once per run, after its close is stored: the hot path per event is unchanged.
      if (m.sender === this.#host.signer.kid)
        await this.#anchor?.anchor({
          run: m.run,
          closeSeq: seq,
          outcome: m.body.outcome,
          receipt: m.body.receipt,
          firstSight:
            inc.delivery.deliveryCount === 1 && inc.delivery.timestampMs >= this.#startedAt,
        });
      return;
    }
    if (violation)
      this.#host.log.warn(
        { run: m.run, seq, kind: m.kind, reason: violation.reason },
        "illegal transition recorded",
      );
    if (c.state.status === "closed") return;
    // A failure (a publish that timed out while a NATS leader was elected) is handled by
    // onMessage: the run is folded again from the stream on the redelivery.
    await this.#react(c.state, m, seq, violation?.reason);
  }

  async #react(
    st: RunState,
    m: Message,
    seq: number,
    violation: string | undefined,
  ): Promise<void> {
    if (m.kind === "recovery_decided" && !violation) {
      recordRecovery({ action: m.body.action, reason: m.body.reason });
      metrics.recoveryAction(m.body.action);
    }
    const r = react(st, m, {
      self: this.#host.signer.kid,
      violation,
      policy: this.#policy,
      now: this.#host.now(),
      undo: needsUndo(m) ? await this.#undoPlan(st) : [],
    });
    if (r.kind === "verify") {
      if (m.kind === "step_executed") await this.#verify(st, m);
      return;
    }
    await this.#apply(st, m, seq, r);
  }

  async #verify(st: RunState, m: MessageOf<"step_executed">): Promise<void> {
    const b = m.body;
    const frames = await this.#evidence(m);
    // Arguments carried by reference are read back once, here, for the audit and the checks.
    const args = await this.#arguments(b.args);
    const audit =
      b.compensationOf === null
        ? auditExecution(
            this.#host.registry,
            m,
            this.#policy,
            runView(st, m.step ?? 0),
            frames,
            args,
          )
        : auditCompensation(
            this.#host.registry,
            m,
            frames,
            await this.#declaredUndos(frames(b.evidence.assignment), frames),
          );
    let checks: Check[] = [...audit];
    let uncertain = false;
    if (b.outcome === "ok") {
      try {
        const tool = this.#tools.get(b.tool);
        if (!tool) throw new Error(`no tool named "${b.tool}" in the verifier's tool pack`);
        if (typeof args === "string") throw new Error(args);
        checks = checks.concat(
          await tool.verify(args, await resolveResult(this.#effects, b.result), {
            effectId: b.effectId,
            attempt: m.attempt,
          }),
        );
      } catch (e) {
        // The bus away (reading the ledger timed out) says nothing about the step: verify
        // again later. Judging it uncertain would order a retry, running the effect again.
        if (isTransientFailure(e)) throw e;
        uncertain = true;
        checks.push({ name: POSTCONDITIONS_UNREADABLE, ok: false, detail: (e as Error).message });
      }
    } else {
      checks.push({ name: TOOL_SUCCEEDED, ok: false, detail: b.error ?? "error" });
    }
    const verification = this.#policy.doc.tiers[b.tier].verification;
    const verdict = verdictOf(b.outcome, checks, uncertain, verification);
    if (uncertain && verdict === "passed") {
      // Say in the signed record why a step with an unread postcondition passed.
      checks = checks.map((c) =>
        c.name === POSTCONDITIONS_UNREADABLE
          ? {
              ...c,
              detail: `${c.detail} (tolerated: the ${b.tier} tier's verification is lenient)`,
            }
          : c,
      );
    }
    setActiveAttribute("trias.verdict", verdict);
    setActiveAttribute("trias.tier", b.tier);
    if (b.compensationOf === null)
      metrics.stepCompleted(
        b.tier,
        verdict,
        Math.max(0, this.#host.now() - proposalIssuedAt(this.#host, frames(b.evidence.assignment))),
      );
    const step = m.step ?? 0;
    await this.#host.emit("step_verified", {
      id: `ver-${b.effectId.replace(/[^A-Za-z0-9_-]/g, "_")}`,
      run: m.run,
      step,
      attempt: m.attempt,
      body: {
        digest: b.digest,
        tool: b.tool,
        verdict,
        checks,
        compensationOf: b.compensationOf,
        index: b.index,
        total: b.total,
      },
      trace: m.trace,
    });
  }

  /** An execution's arguments: its own, the bytes its reference names, or why they cannot be read. */
  async #arguments(args: JsonObject): Promise<JsonObject | string> {
    if (!isArgsRef(args)) return args;
    try {
      return await this.#host.payloads.resolve(args);
    } catch (e) {
      if (e instanceof ValidationError) return e.message;
      throw e;
    }
  }

  /**
   * What the tool pack says undoes an effect, from the arguments and result that effect had
   * (each read back when it travelled by digest).
   */
  async #declaredUndo(original: MessageOf<"step_executed">): Promise<DeclaredUndo | null> {
    const tool = this.#tools.get(original.body.tool);
    if (!tool) return null;
    try {
      return tool.compensate(
        await this.#host.payloads.resolve(original.body.args),
        await resolveResult(this.#effects, original.body.result),
      );
    } catch (e) {
      if (isTransientFailure(e)) throw e;
      return null;
    }
  }

  /**
   * The frames an execution names as its evidence, by frameRef: from the run's cache, or,
   * for any it does not hold (large frames, a restart), read back from the trace.
   */
  async #evidence(m: MessageOf<"step_executed">): Promise<FrameLookup> {
    const frames = this.#runs.get(m.run)?.frames;
    const cached: FrameLookup = (r) => frames?.get(r)?.data;
    const refs = [m.body.evidence.assignment, ...m.body.evidence.approvals];
    // A compensation's order names the effect it undoes: that frame is needed too.
    const order = m.body.compensationOf === null ? undefined : cached(m.body.evidence.assignment);
    if (order) refs.push(this.#orderEvidence(order) ?? "");
    if (refs.every((r) => cached(r) !== undefined)) return cached;
    const read = new Map<string, Uint8Array>();
    for (const stored of await this.#readRun(m.run)) read.set(frameRef(stored.data), stored.data);
    return (r) => cached(r) ?? read.get(r);
  }

  /** The reference a compensate order's frame names as the effect it undoes, if it is one. */
  #orderEvidence(frame: Uint8Array): string | null {
    try {
      const o = this.#host.registry.open(frame).message;
      return o.kind === "recovery_decided" ? o.body.evidence : null;
    } catch {
      return null;
    }
  }

  /** The declared undo of the effect a compensation's order carries, for the pure audit. */
  async #declaredUndos(
    orderBytes: Uint8Array | undefined,
    frames: FrameLookup,
  ): Promise<(o: MessageOf<"step_executed">) => DeclaredUndo | null> {
    let declared: DeclaredUndo | null = null;
    try {
      const order = orderBytes ? this.#host.registry.open(orderBytes).message : null;
      const ref = order?.kind === "recovery_decided" ? order.body.evidence : null;
      const bytes = ref ? frames(ref) : undefined;
      const original = bytes ? this.#host.registry.open(bytes).message : null;
      if (original?.kind === "step_executed") declared = await this.#declaredUndo(original);
    } catch {
      // The audit opens the evidence itself and reports why it does not verify.
    }
    return () => declared;
  }

  /** Every effect of the run with how to undo it, read from the executor's signed frames. */
  async #undoPlan(st: RunState): Promise<EffectUndo[]> {
    if (st.effects.length === 0) return [];
    const frames = new Map<number, StoredMessage>();
    const filter = subjectFor("executor", "step_executed", st.run);
    for (const s of (await this.#host.bus.readRun(st.run, { filter })).messages)
      frames.set(s.seq, s);
    const out: EffectUndo[] = [];
    for (const effect of st.effects) {
      const stored = frames.get(effect.seq);
      if (!stored) continue;
      const opened = this.#host.registry.open(stored.data).message;
      if (opened.kind !== "step_executed") continue;
      const op = this.#policy.doc.tools[opened.body.tool]?.op;
      const undo = await this.#declaredUndo(opened);
      out.push({
        effect,
        frame: stored.data,
        readOnly: op === "read",
        // An order carries large undo arguments by reference, like any step: their bytes are
        // stored first, so the executor and this verifier read back what the order names.
        order: undo && { tool: undo.tool, args: await this.#host.payloads.store(undo.args) },
      });
    }
    return out;
  }

  async #apply(st: RunState, cause: Message, seq: number, d: Decision): Promise<void> {
    switch (d.kind) {
      case "none":
        return;
      case "recover":
        await this.#host.emit("recovery_decided", {
          id: `rec-${cause.run}-${seq}`,
          run: cause.run,
          step: d.compensation?.step ?? st.current,
          attempt: d.nextAttempt,
          body: {
            digest: d.digest,
            action: d.action,
            reason: d.reason,
            compensation: d.compensation,
            avoid: d.avoid,
            nextAttempt: d.nextAttempt,
            notBefore: d.notBefore,
            evidence: d.evidence,
          },
          trace: cause.trace,
        });
        return;
      case "close":
        await this.#close(st, cause, d.outcome, d.reason, seq);
        return;
    }
  }

  async #close(
    st: RunState,
    cause: Message,
    outcome: RunOutcome,
    reason: string,
    uptoSeq: number,
  ): Promise<void> {
    // The receipt covers the run's trace up to the event that closed it: a pure function
    // of the stream, so anyone can recompute it.
    const sealed = (this.#runs.get(cause.run)?.chain ?? new ReceiptChain(cause.run)).upTo(uptoSeq);
    const at = this.#host.now();
    const digests = [
      ...new Set([
        ...st.steps.flatMap((s) => (s?.policyDigest ? [s.policyDigest] : [])),
        this.#policy.digest,
      ]),
    ];
    const receipt = {
      ...sealed.receipt,
      links: sealed.links,
      // What the run was checked under, so an auditor knows which registry and policy to use.
      keySet: { digest: this.#host.registry.keySetDigest(at), at },
      policy: { digests, environment: this.#policy.doc.environment },
    };
    const tm = topologyMetrics(st);
    const steps = st.steps.filter((s) => s !== undefined).length;
    const assessed = assessTopology(
      tm,
      {
        entropyBits: this.#policy.doc.metrics.entropyBits,
        rollbackDensity: this.#policy.doc.metrics.rollbackDensity,
      },
      linearBaseline(Math.max(1, steps)),
    );
    const topology: Topology = {
      entropyBits: round(tm.entropyBits),
      rollbackDensity: round(tm.rollbackDensity),
      pathVariance: round(assessed.pathVariance),
      sequenceVariance: round(assessed.sequenceVariance),
      alarm: assessed.alarm,
      reasons: assessed.reasons,
    };
    if (topology.alarm)
      this.#host.log.warn({ run: cause.run, topology }, "execution topology alarm");
    await this.#host.emit("run_closed", {
      id: `close-${cause.run}`,
      run: cause.run,
      step: null,
      attempt: 0,
      body: { outcome, reason, steps, receipt, topology },
      trace: cause.trace,
    });
  }
}

function round(n: number): number {
  return Math.round(n * 1000) / 1000;
}

/**
 * Keep a frame a later record may name. A new proposal starts a new step (or attempt), whose
 * execution names only frames stored after it: the earlier step's assignments, verdicts and
 * orders go; executions stay, for the compensate orders of a rollback.
 */
function keepFrame(
  frames: Map<string, { kind: string; data: Uint8Array }>,
  kind: string,
  data: Uint8Array,
): void {
  if (kind === "step_proposed") {
    for (const [ref, f] of frames) if (f.kind !== "step_executed") frames.delete(ref);
  } else if (EVIDENCE_KINDS.has(kind) && data.length <= MAX_CACHED_FRAME_BYTES)
    frames.set(frameRef(data), { kind, data });
}

/** When the step was proposed, read from the signed evidence. */
function proposalIssuedAt(host: AgentHost, assignment: Uint8Array | undefined): number {
  if (!assignment) return host.now();
  try {
    return openAssignment(host.registry, assignment).proposal.message.issuedAt;
  } catch {
    return host.now();
  }
}
