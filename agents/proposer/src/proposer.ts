import { RunId, ValidationError, type MessageOf, type StepProposed } from "@trias/protocol";
import type { AgentHost, HandlerResult, Incoming } from "@trias/runtime";
import { subjectFor } from "@trias/protocol";
import { planTask, type PlannedStep } from "./planner.js";

export type Planner = (
  task: MessageOf<"task_submitted">["body"],
) => Promise<PlannedStep[]> | PlannedStep[];

/** Build the proposal body for step `index` of a plan. Pure. */
export function proposalFor(
  plan: readonly PlannedStep[],
  index: number,
  replanOf: string | null = null,
): StepProposed {
  const s = plan[index];
  if (!s) throw new RangeError(`plan has no step ${index}`);
  return {
    tool: s.tool,
    args: s.args,
    rationale: s.rationale,
    expected: s.expected,
    index,
    total: plan.length,
    replanOf,
  };
}

/**
 * The proposer proposes one step at a time: step 0 when a task arrives, step n+1 when step n
 * is verified as passed. Plans are derived from the task, so any replica (or this one after
 * a restart) recomputes the same plan from the trace.
 */
export class Proposer {
  readonly #host: AgentHost;
  readonly #planner: Planner;
  readonly #plans = new Map<string, PlannedStep[]>();

  constructor(host: AgentHost, planner: Planner = planTask) {
    this.#host = host;
    this.#planner = planner;
  }

  async start(): Promise<void> {
    await this.#host.listen("proposer-tasks", subjectFor("console", "task_submitted", "*"), (inc) =>
      this.onTask(inc),
    );
    await this.#host.listen(
      "proposer-progress",
      subjectFor("verifier", "step_verified", "*"),
      (inc) => this.onVerified(inc),
    );
    await this.#host.listen("proposer-recovery", "trias.*.recovery_decided.*", (inc) => this.onRecovery(inc));
  }

  async #plan(run: string, task: MessageOf<"task_submitted">): Promise<PlannedStep[]> {
    const cached = this.#plans.get(run);
    if (cached) return cached;
    const plan = await this.#planner(task.body);
    if (this.#plans.size > 10_000) this.#plans.delete(this.#plans.keys().next().value ?? "");
    this.#plans.set(run, plan);
    return plan;
  }

  async onTask(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "task_submitted") return;
    const plan = await this.#plan(m.run, m);
    await this.#host.emit("step_proposed", {
      id: `prop-${m.run}-0-0`,
      run: m.run,
      step: 0,
      attempt: 0,
      body: proposalFor(plan, 0),
      trace: m.trace,
    });
  }

  async onVerified(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "step_verified" || m.step === null) return;
    const b = m.body;
    if (b.verdict !== "passed" || b.compensationOf !== null || b.index + 1 >= b.total) return;
    const task = await this.#loadTask(m.run);
    const plan = await this.#plan(m.run, task);
    const next = b.index + 1;
    if (next >= plan.length) return;
    await this.#host.emit("step_proposed", {
      id: `prop-${m.run}-${next}-0`,
      run: m.run,
      step: next,
      attempt: 0,
      body: proposalFor(plan, next),
      trace: m.trace,
    });
  }

  async #loadTask(run: string): Promise<MessageOf<"task_submitted">> {
    RunId.parse(run);
    const stored = await this.#host.bus.lastBySubject(subjectFor("console", "task_submitted", run));
    if (!stored) throw new Error(`no task_submitted in the trace for run ${run}`);
    const opened = this.#host.registry.open(stored.data);
    if (opened.message.kind !== "task_submitted")
      throw new Error(`unexpected ${opened.message.kind} on the task subject`);
    return opened.message;
  }

  /**
   * A retry proposes the same action again at the attempt the recovery names, not before
   * its backoff (the order is redelivered when it is due: a durable timer). A replan needs a
   * planner that can plan around a failure; the deterministic one cannot, and says so.
   */
  async onRecovery(inc: Incoming): Promise<HandlerResult> {
    const m = inc.message;
    if (m.kind !== "recovery_decided") return;
    const b = m.body;
    if (b.action !== "retry" && b.action !== "replan") return;
    const wait = (b.notBefore ?? 0) - this.#host.now();
    if (wait > 0) return { retryInMs: wait };
    const stored = await this.#host.bus.lastBySubject(subjectFor("proposer", "step_proposed", m.run));
    if (!stored) throw new ValidationError("schema_invalid", `no proposal in the trace of run ${m.run} to ${b.action}`);
    const last = this.#host.registry.open(stored.data).message;
    if (last.kind !== "step_proposed" || last.step === null) return;
    if (b.action === "replan") {
      throw new ValidationError("unsupported", `the deterministic planner cannot replan step ${last.step} of run ${m.run}: order a retry, a rollback or a human decision instead`);
    }
    await this.#host.emit("step_proposed", {
      id: `prop-${m.run}-${last.step}-${b.nextAttempt}`,
      run: m.run,
      step: last.step,
      attempt: b.nextAttempt,
      body: { ...last.body, replanOf: null },
      trace: m.trace,
    });
  }
}
