import type { Bus } from "@trias/bus";
import {
  runFilter,
  type Check,
  type Message,
  type MessageOf,
  type RunOutcome,
  type VerificationVerdict,
} from "@trias/protocol";
import { computeReceipt } from "@trias/runstate";
import { getTool, type ToolRuntime } from "@trias/tools";
import { openAssignment, type AgentHost, type Incoming } from "@trias/runtime";
import { auditExecution } from "./audit.js";
import { metrics, setActiveAttribute } from "@trias/telemetry";

/** What the verifier remembers of a run; rebuilt from the trace whenever it is missing. */
interface RunFacts {
  executed: Set<string>;
  closed: boolean;
  steps: number;
  lastSeq: number;
}

/** Pure: a verification verdict from checks. Uncertain is never passed. */
export function verdictOf(
  outcome: "ok" | "error",
  checks: readonly Check[],
  uncertain: boolean,
): VerificationVerdict {
  if (uncertain) return "uncertain";
  if (outcome === "error") return "failed";
  return checks.every((c) => c.ok) ? "passed" : "failed";
}

/**
 * The verifier reads the whole trace in order (one consumer, every subject), so for each run
 * it sees proposals, assignments, verdicts and executions in the order they were stored. It
 * checks every execution on its own, and closes each run with a receipt over its trace.
 */
export class Verifier {
  readonly #host: AgentHost;
  readonly #rt: ToolRuntime;
  readonly #runs = new Map<string, RunFacts>();

  constructor(host: AgentHost, rt: ToolRuntime) {
    this.#host = host;
    this.#rt = rt;
  }

  get bus(): Bus {
    return this.#host.bus;
  }

  async start(): Promise<void> {
    await this.#host.listen("verifier", "trias.>", (inc) => this.onMessage(inc), { batch: 128 });
  }

  async #facts(run: string, uptoSeq: number): Promise<RunFacts> {
    let f = this.#runs.get(run);
    if (f) return f;
    f = { executed: new Set(), closed: false, steps: 0, lastSeq: 0 };
    // Cold: fold what the trace already holds for this run (a restart, or a new replica).
    for (const stored of await this.#host.bus.readAll(runFilter(run))) {
      if (stored.seq >= uptoSeq) break;
      try {
        observe(f, this.#host.registry.open(stored.data).message, stored.seq);
      } catch {
        // Refused messages change nothing.
      }
    }
    if (this.#runs.size > 20_000) this.#runs.delete(this.#runs.keys().next().value ?? "");
    this.#runs.set(run, f);
    return f;
  }

  async onMessage(inc: Incoming): Promise<void> {
    const m = inc.message;
    const f = await this.#facts(m.run, inc.delivery.seq);
    if (inc.delivery.seq <= f.lastSeq) return;
    observe(f, m, inc.delivery.seq);
    if (f.closed && m.kind !== "run_closed") return;
    switch (m.kind) {
      case "step_executed":
        await this.#verify(m, inc.delivery.seq);
        return;
      case "tier_assigned":
        if (m.body.denied !== null)
          await this.#close(
            m,
            "rejected",
            `step ${m.step} denied by policy: ${m.body.denied}`,
            inc.delivery.seq,
          );
        return;
      case "verdict":
        if (m.body.decision !== "approve" && !f.executed.has(m.body.digest)) {
          await this.#close(
            m,
            "rejected",
            `step ${m.step} ${m.body.decision} by ${inc.key.name}: ${m.body.reasons.join("; ")}`,
            inc.delivery.seq,
          );
        }
        return;
      case "message_rejected":
        if (m.body.by === "executor" && m.body.code === "quorum_not_met")
          await this.#close(m, "rejected", m.body.reason, inc.delivery.seq);
        return;
      case "task_submitted":
      case "step_proposed":
      case "step_verified":
      case "recovery_decided":
      case "run_closed":
        return;
      default: {
        const never: never = m;
        throw new Error(`unhandled ${String(never)}`);
      }
    }
  }

  async #verify(m: MessageOf<"step_executed">, seq: number): Promise<void> {
    const b = m.body;
    const audit = auditExecution(this.#host.registry, m);
    let checks: Check[] = [...audit];
    let uncertain = false;
    if (b.outcome === "ok") {
      try {
        checks = checks.concat(
          await getTool(b.tool).verify(this.#rt, b.args, b.result, {
            effectId: b.effectId,
            attempt: m.attempt,
          }),
        );
      } catch (e) {
        uncertain = true;
        checks.push({ name: "postconditions readable", ok: false, detail: (e as Error).message });
      }
    } else {
      checks.push({ name: "tool succeeded", ok: false, detail: b.error ?? "error" });
    }
    const verdict = verdictOf(b.outcome, checks, uncertain);
    setActiveAttribute("trias.verdict", verdict);
    setActiveAttribute("trias.tier", b.tier);
    metrics.stepCompleted(b.tier, verdict, Math.max(0, this.#host.now() - proposalIssuedAt(this.#host, b.evidence.assignment)));
    const step = m.step ?? 0;
    await this.#host.emit("step_verified", {
      id: `ver-${m.run}-${step}-${m.attempt}${b.compensationOf ? "-c" : ""}`,
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
    if (audit.some((c) => !c.ok)) {
      await this.#close(
        m,
        "quarantined",
        `execution of step ${step} is not backed by valid authorisation: ${audit
          .filter((c) => !c.ok)
          .map((c) => c.detail)
          .join("; ")}`,
        seq,
      );
      return;
    }
    if (verdict === "passed" && b.compensationOf === null && b.index + 1 >= b.total) {
      await this.#close(m, "completed", `all ${b.total} step(s) executed and verified`, seq);
    } else if (verdict !== "passed") {
      await this.#close(
        m,
        "failed",
        `step ${step} verification ${verdict}: ${checks
          .filter((c) => !c.ok)
          .map((c) => `${c.name}: ${c.detail}`)
          .join("; ")}`,
        seq,
      );
    }
  }

  async #close(
    cause: { run: string; trace: MessageOf<"task_submitted">["trace"] },
    outcome: RunOutcome,
    reason: string,
    uptoSeq: number,
  ): Promise<void> {
    const f = this.#runs.get(cause.run);
    if (f?.closed) return;
    // The receipt covers the run's trace up to the message that closed it: a pure function
    // of the stream, so anyone can recompute it.
    const events = (await this.#host.bus.readAll(runFilter(cause.run))).filter(
      (e) => e.seq <= uptoSeq,
    );
    const receipt = computeReceipt(
      events.map((e) => ({ seq: e.seq, subject: e.subject, frame: e.data })),
      cause.run,
    );
    if (f) f.closed = true;
    await this.#host.emit("run_closed", {
      id: `close-${cause.run}`,
      run: cause.run,
      step: null,
      attempt: 0,
      body: { outcome, reason, steps: f?.steps ?? 0, receipt },
      trace: cause.trace,
    });
  }
}

/** Pure: update run facts with one message. */
function observe(f: RunFacts, m: Message, seq: number): void {
  f.lastSeq = Math.max(f.lastSeq, seq);
  if (m.kind === "step_executed" && m.body.compensationOf === null) {
    f.executed.add(m.body.digest);
    f.steps = Math.max(f.steps, (m.step ?? 0) + 1);
  }
  if (m.kind === "run_closed") f.closed = true;
}

/** When the step was proposed, read from the signed evidence; 0 when it cannot be read. */
function proposalIssuedAt(host: AgentHost, assignment: Uint8Array): number {
  try {
    return openAssignment(host.registry, assignment).proposal.message.issuedAt;
  } catch {
    return host.now();
  }
}
