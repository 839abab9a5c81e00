import { isTransientBusError, type StoredMessage } from "@trias/bus";
import {
  GateError,
  boundedSet,
  isTriasError,
  runFilter,
  TransientError,
  subjectFor,
  type Check,
  type Message,
  type MessageOf,
  type RunOutcome,
  type Topology,
  type VerificationVerdict,
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
import { openAssignment, type AgentHost, type Incoming } from "@trias/runtime";
import { metrics, recordRecovery, setActiveAttribute } from "@trias/telemetry";
import { AUTHORISATION_CHECKS, auditCompensation, auditExecution } from "./audit.js";
import { decideRecovery, nextCompensation, type Decision, type EffectUndo } from "./recovery.js";
import type { ReceiptAnchor } from "./anchor.js";

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
  /** Highest stream sequence handled (applied or found illegal). */
  seen: number;
  /** The receipt chain over every stored message of the run so far, refused ones too. */
  chain: ReceiptChain;
}

/**
 * Runs kept in memory; a run evicted (or closed) is folded again from the stream if needed.
 * A run of 20 steps holds about 56 KB (state and receipt chain), so this stays well inside
 * the agents' 128 MB old-generation ceiling.
 */
const MAX_OPEN_RUNS = 1_000;

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
  readonly #runs = new Map<string, RunCache>();
  /** Runs whose first stored message was refused: their history must come from the stream. */
  readonly #refusedFirst = new Set<string>();
  /**
   * Run -> the sequence whose reaction failed and waits for its redelivery. Later events of
   * the run wait too (retried), or folding them would count the failed one as seen and its
   * reaction (a close, a recovery) would never happen.
   */
  readonly #failed = new Map<string, number>();
  /** Runs whose run_closed this process applied: seq and whether the run was quarantined. */
  readonly #sealed = new Map<string, { seq: number; status: "closed" | "quarantined" }>();
  /** Where closed runs' receipts are chained; null without the receipts bucket. */
  readonly #anchor: ReceiptAnchor | null;

  constructor(
    host: AgentHost,
    tools: Catalogue,
    policy: LoadedPolicy,
    anchor: ReceiptAnchor | null = null,
  ) {
    this.#host = host;
    this.#tools = tools;
    this.#policy = policy;
    this.#anchor = anchor;
  }

  async start(): Promise<void> {
    await this.#host.listen("verifier", "trias.>", (inc) => this.onMessage(inc), {
      batch: 128,
      onRefused: (d) => {
        const cached = this.#runs.get(runOf(d.subject));
        if (cached) cached.chain.add({ seq: d.seq, subject: d.subject, frame: d.data });
        else this.#refusedFirst.add(runOf(d.subject));
      },
    });
  }

  /**
   * The run's state up to (not including) `seq`. A run's first message needs no history; a
   * run this process has not followed (a restart, an eviction) is folded from the stream.
   */
  async #load(run: string, seq: number, first: boolean): Promise<RunCache> {
    const cached = this.#runs.get(run);
    if (cached) return cached;
    const c: RunCache = { state: foldRun([], run), seen: seq - 1, chain: new ReceiptChain(run) };
    if (!first || this.#refusedFirst.delete(run)) {
      const events: TraceEvent[] = [];
      for (const stored of await this.#host.bus.readAll(runFilter(run))) {
        if (stored.seq >= seq) break;
        c.chain.add({ seq: stored.seq, subject: stored.subject, frame: stored.data });
        const ev = this.#event(stored);
        if (ev) events.push(ev);
      }
      c.state = foldRun(events, run);
    }
    boundedSet(this.#runs, run, c, MAX_OPEN_RUNS);
    return c;
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
        `run ${m.run}: waiting for the redelivery of event ${failed}, whose reaction failed`,
      );
    if (failed === seq) this.#failed.delete(m.run);
    const sealed = this.#sealed.get(m.run);
    if (sealed !== undefined && seq > sealed.seq) {
      // A closed run stays closed (docs/receipts.md, "After the receipt"): refusals and slow
      // verdicts change nothing and are let be; anything else gets a signed refusal.
      const reason = afterClose({ closed: sealed, status: sealed.status }, m.kind);
      if (reason !== null) throw new GateError("run_closed", reason);
      return;
    }
    let c = await this.#load(m.run, seq, m.kind === "task_submitted");
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
        });
      return;
    }
    if (violation)
      this.#host.log.warn(
        { run: m.run, seq, kind: m.kind, reason: violation.reason },
        "illegal transition recorded",
      );
    if (c.state.status === "closed") return;
    try {
      await this.#react(c.state, m, seq, violation?.reason);
    } catch (e) {
      // The cached state already counts this event as seen: forget it, so the redelivery
      // (a publish that timed out while a NATS leader was elected) folds the run from the
      // stream and reacts again instead of skipping the event and leaving the run open.
      // Only a failure that will be redelivered holds the run's later events.
      this.#runs.delete(m.run);
      if (isTransientBusError(e) || (isTriasError(e) && e.retryable))
        boundedSet(this.#failed, m.run, seq, MAX_OPEN_RUNS);
      throw e;
    }
  }

  async #react(
    st: RunState,
    m: Message,
    seq: number,
    violation: string | undefined,
  ): Promise<void> {
    switch (m.kind) {
      case "step_executed":
        if (violation) {
          // An effect that the trace does not authorise: halt the run before anything else runs.
          await this.#apply(st, m, seq, {
            kind: "recover",
            action: "quarantine",
            reason: `execution not backed by the trace: ${violation}`,
            digest: m.body.digest,
            nextAttempt: m.attempt,
            notBefore: null,
            avoid: [m.body.digest],
            compensation: null,
            evidence: null,
          });
          return;
        }
        await this.#verify(m);
        return;
      case "step_verified":
        if (violation || m.sender !== this.#host.signer.kid) return;
        await this.#apply(st, m, seq, await this.#afterVerification(st, m));
        return;
      case "recovery_decided":
        if (violation) return;
        await this.#apply(st, m, seq, await this.#afterRecovery(st, m));
        return;
      case "tier_assigned":
        if (m.body.denied !== null && !violation)
          await this.#apply(st, m, seq, {
            kind: "close",
            outcome: "rejected",
            reason: `step ${m.step} denied by policy: ${m.body.denied}`,
          });
        return;
      case "verdict": {
        const step = st.current === null ? undefined : st.steps[st.current];
        if (
          m.body.decision !== "approve" &&
          !violation &&
          step?.digest === m.body.digest &&
          st.phase === "vetoed"
        ) {
          await this.#apply(st, m, seq, {
            kind: "close",
            outcome: "rejected",
            reason: `step ${m.step} ${m.body.decision} by ${m.sender.split(":")[0] ?? m.sender}: ${m.body.reasons.join("; ")}`,
          });
        }
        return;
      }
      case "subject_erased":
        return;
      case "message_rejected":
        if (m.body.subject.includes(".task_submitted.") && m.body.by === "proposer") {
          // The proposer cannot plan the task: nothing will ever be proposed for it.
          await this.#apply(st, m, seq, {
            kind: "close",
            outcome: "rejected",
            reason: `the proposer refused the task: ${m.body.reason}`,
          });
          return;
        }
        if (
          m.body.by === "proposer" &&
          m.body.subject.includes(".recovery_decided.") &&
          st.phase !== "escalated"
        ) {
          // The proposer cannot carry out the recovery (no replan possible): a human decides.
          const cur = st.current === null ? undefined : st.steps[st.current];
          await this.#apply(st, m, seq, {
            kind: "recover",
            action: "escalate",
            reason: `the proposer could not carry out the recovery (${m.body.reason}): a human decides`,
            digest: cur?.digest ?? "0".repeat(64),
            nextAttempt: cur?.attempt ?? 0,
            notBefore: null,
            avoid: [],
            compensation: null,
            evidence: null,
          });
          return;
        }
        if (m.body.by !== "executor") return;
        if (m.body.code === "quorum_not_met") {
          await this.#apply(st, m, seq, {
            kind: "close",
            outcome: "rejected",
            reason: m.body.reason,
          });
        } else if (m.body.subject.includes(".recovery_decided.") && st.phase !== "escalated") {
          // The executor refused a recovery order: recovery cannot go on by itself.
          const digest = st.current === null ? "" : (st.steps[st.current]?.digest ?? "");
          await this.#apply(st, m, seq, {
            kind: "recover",
            action: "escalate",
            reason: `the executor refused a recovery order (${m.body.code}: ${m.body.reason}): a human decides`,
            digest: digest || "0".repeat(64),
            nextAttempt: st.current === null ? 0 : (st.steps[st.current]?.attempt ?? 0),
            notBefore: null,
            avoid: [],
            compensation: null,
            evidence: null,
          });
        }
        return;
      case "task_submitted":
      case "step_proposed":
      case "run_closed":
        return;
    }
  }

  async #verify(m: MessageOf<"step_executed">): Promise<void> {
    const b = m.body;
    const audit =
      b.compensationOf === null
        ? auditExecution(this.#host.registry, m)
        : auditCompensation(this.#host.registry, m, this.#tools);
    let checks: Check[] = [...audit];
    let uncertain = false;
    if (b.outcome === "ok") {
      try {
        checks = checks.concat(
          await this.#tools.require(b.tool).verify(b.args, b.result, {
            effectId: b.effectId,
            attempt: m.attempt,
          }),
        );
      } catch (e) {
        uncertain = true;
        checks.push({ name: POSTCONDITIONS_UNREADABLE, ok: false, detail: (e as Error).message });
      }
    } else {
      checks.push({ name: "tool succeeded", ok: false, detail: b.error ?? "error" });
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
        Math.max(0, this.#host.now() - proposalIssuedAt(this.#host, b.evidence.assignment)),
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

  async #afterVerification(st: RunState, m: MessageOf<"step_verified">): Promise<Decision> {
    const b = m.body;
    const unauthorised = b.checks.filter((x) => !x.ok && AUTHORISATION_CHECKS.has(x.name));
    if (unauthorised.length > 0) {
      // Not a failed outcome but an effect without valid authorisation: halt the run.
      return {
        kind: "recover",
        action: "quarantine",
        reason: `step ${b.index} executed without valid authorisation: ${unauthorised.map((x) => `${x.name}: ${x.detail}`).join("; ")}`,
        digest: b.digest,
        nextAttempt: m.attempt,
        notBefore: null,
        avoid: [b.digest],
        compensation: null,
        evidence: null,
      };
    }
    if (b.compensationOf !== null) {
      if (b.verdict !== "passed") {
        return {
          kind: "recover",
          action: "escalate",
          reason: `compensation of step ${b.index} ${b.verdict}: a human decides`,
          digest: b.digest,
          nextAttempt: m.attempt,
          notBefore: null,
          avoid: [],
          compensation: null,
          evidence: null,
        };
      }
      return nextCompensation(st, await this.#undoPlan(st));
    }
    if (b.verdict === "passed") {
      return b.index + 1 >= b.total
        ? {
            kind: "close",
            outcome: "completed",
            reason: `all ${b.total} step(s) executed and verified`,
          }
        : { kind: "none" };
    }
    const step = st.steps[b.index];
    if (!step || step.digest !== b.digest) return { kind: "none" };
    const failed = b.checks.filter((x) => !x.ok).map((x) => `${x.name}: ${x.detail}`);
    const outcome = step.execution?.outcome ?? "error";
    const tier = step.tier ?? "full";
    return decideRecovery(
      step,
      { verdict: b.verdict, outcome, reason: failed.join("; ") || b.verdict },
      this.#policy.doc.tiers[tier],
      await this.#undoPlan(st),
      this.#host.now(),
      st.program === "freeform",
    );
  }

  async #afterRecovery(st: RunState, m: MessageOf<"recovery_decided">): Promise<Decision> {
    recordRecovery({ action: m.body.action, reason: m.body.reason });
    metrics.recoveryAction(m.body.action);
    switch (m.body.action) {
      case "rollback":
        return nextCompensation(st, await this.#undoPlan(st));
      case "quarantine":
        return { kind: "close", outcome: "quarantined", reason: m.body.reason };
      case "retry":
      case "replan":
      case "compensate":
      case "escalate":
        return { kind: "none" };
    }
  }

  /** Every effect of the run with how to undo it, read from the executor's signed frames. */
  async #undoPlan(st: RunState): Promise<EffectUndo[]> {
    if (st.effects.length === 0) return [];
    const frames = new Map<number, StoredMessage>();
    for (const s of await this.#host.bus.readAll(subjectFor("executor", "step_executed", st.run)))
      frames.set(s.seq, s);
    const out: EffectUndo[] = [];
    for (const effect of st.effects) {
      const stored = frames.get(effect.seq);
      if (!stored) continue;
      const opened = this.#host.registry.open(stored.data).message;
      if (opened.kind !== "step_executed") continue;
      const tool = this.#tools.get(opened.body.tool);
      const op = this.#policy.doc.tools[opened.body.tool]?.op;
      out.push({
        effect,
        frame: stored.data,
        readOnly: op === "read",
        order: tool ? tool.compensate(opened.body.args, opened.body.result) : null,
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

/** When the step was proposed, read from the signed evidence. */
function proposalIssuedAt(host: AgentHost, assignment: Uint8Array): number {
  try {
    return openAssignment(host.registry, assignment).proposal.message.issuedAt;
  } catch {
    return host.now();
  }
}

function runOf(subject: string): string {
  return subject.slice(subject.lastIndexOf(".") + 1);
}
