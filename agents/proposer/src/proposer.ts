import {
  ASSIGNMENT_OVERHEAD_BYTES,
  RunId,
  ValidationError,
  boundedSet,
  type Message,
  type MessageOf,
  type StepProposed,
} from "@trias/protocol";
import type { LlmClient } from "@trias/llm";
import type { Catalogue } from "@trias/tools";
import type { AgentHost, HandlerResult, Incoming } from "@trias/runtime";
import { subjectFor } from "@trias/protocol";
import { PLAN_CACHE_RUNS } from "./config.js";
import { planTask, type PlannedStep } from "./planner.js";
import { planNextWithLlm, type HistoryItem } from "./llm-planner.js";

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
    usage: null,
  };
}

/** What to propose at one index of a run: the step and how many steps the plan has now. */
export interface NextStep {
  step: PlannedStep;
  total: number;
  /** The model's spend to produce it, for the run's budget; null without a model. */
  usage: StepProposed["usage"];
}

/**
 * The proposer proposes one step at a time: step 0 when a task arrives, step n+1 when step n
 * is verified as passed. Deterministic plans are derived from the task, so any replica (or
 * this one after a restart) recomputes the same plan; a `freeform` task asks the model for
 * each next step, from the task and the results so far, read back from the trace.
 */
export class Proposer {
  readonly #host: AgentHost;
  readonly #llm: LlmClient | null;
  readonly #tools: Catalogue | null;
  /** Each run's plan with its task, so a step reads neither from the trace. */
  readonly #plans = new Map<string, { plan: PlannedStep[]; task: MessageOf<"task_submitted"> }>();

  constructor(host: AgentHost, llm: LlmClient | null = null, tools: Catalogue | null = null) {
    this.#host = host;
    this.#llm = llm;
    this.#tools = tools;
    // Runs now handled by another replica (docs/scaling.md, section 2): planned again if they come back.
    host.onRunsMoved((moved) => {
      for (const run of this.#plans.keys()) if (moved(run)) this.#plans.delete(run);
    });
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
    await this.#host.listen("proposer-recovery", "trias.*.recovery_decided.*", (inc) =>
      this.onRecovery(inc),
    );
  }

  async #next(
    run: string,
    task: MessageOf<"task_submitted">,
    index: number,
  ): Promise<NextStep | null> {
    if (task.body.program === "freeform") {
      if (!this.#llm) {
        throw new ValidationError(
          "unsupported",
          "freeform tasks need a model: set TRIAS_LLM_BASE_URL (and TRIAS_LLM_API_KEY, TRIAS_LLM_MODEL) for the proposer, or submit a known program",
        );
      }
      const history = index === 0 ? [] : await this.#history(run);
      const next = await planNextWithLlm(this.#llm, this.#tools, task.body, history);
      // The model may find the task done after a step it did not mark last: close it with a
      // step that changes nothing, so the run still ends verified.
      const step = next?.step ?? {
        tool: "noop.echo",
        args: { done: true },
        rationale: "the model reports the task complete",
        expected: "nothing changes",
      };
      return {
        step,
        total: next === null || next.last ? index + 1 : index + 2,
        usage: next?.usage ?? null,
      };
    }
    let plan = this.#plans.get(run)?.plan;
    if (!plan) {
      plan = planTask(task.body);
      boundedSet(this.#plans, run, { plan, task }, PLAN_CACHE_RUNS);
    }
    const step = plan[index];
    return step ? { step, total: plan.length, usage: null } : null;
  }

  /** Earlier steps' outcomes, from the executor's signed messages in the trace. */
  async #history(run: string): Promise<HistoryItem[]> {
    const out: HistoryItem[] = [];
    const filter = subjectFor("executor", "step_executed", run);
    for (const s of (await this.#host.bus.readRun(run, { filter })).messages) {
      const m = this.#host.registry.open(s.data).message;
      if (m.kind === "step_executed" && m.body.compensationOf === null)
        out.push({
          tool: m.body.tool,
          args: m.body.args,
          outcome: m.body.outcome,
          result: m.body.result,
        });
    }
    return out;
  }

  async #propose(m: Message, task: MessageOf<"task_submitted">, index: number): Promise<void> {
    const next = await this.#next(m.run, task, index);
    if (!next) return;
    await this.#host.emit("step_proposed", {
      // Its tier assignment embeds it: leave it room under the frame limit.
      headroom: ASSIGNMENT_OVERHEAD_BYTES,
      id: `prop-${m.run}-${index}-0`,
      run: m.run,
      step: index,
      attempt: 0,
      body: {
        ...next.step,
        // Large arguments travel by reference, their bytes in the payloads bucket.
        args: await this.#host.payloads.store(next.step.args),
        index,
        total: next.total,
        replanOf: null,
        usage: next.usage,
        requestedBy: task.body.requestedBy,
      },
      trace: m.trace,
    });
    // Nothing more to propose from this plan; a retry re-reads the proposal from the trace.
    if (index + 1 >= next.total) this.#plans.delete(m.run);
  }

  async onTask(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "task_submitted") return;
    await this.#propose(m, m, 0);
  }

  async onVerified(inc: Incoming): Promise<void> {
    const m = inc.message;
    if (m.kind !== "step_verified" || m.step === null) return;
    const b = m.body;
    if (b.verdict !== "passed" || b.compensationOf !== null || b.index + 1 >= b.total) return;
    await this.#propose(m, await this.#loadTask(m.run), b.index + 1);
  }

  async #loadTask(run: string): Promise<MessageOf<"task_submitted">> {
    const known = this.#plans.get(run)?.task;
    if (known) return known;
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
    const stored = await this.#host.bus.lastBySubject(
      subjectFor("proposer", "step_proposed", m.run),
    );
    if (!stored)
      throw new ValidationError(
        "schema_invalid",
        `no proposal in the trace of run ${m.run} to ${b.action}`,
      );
    const last = this.#host.registry.open(stored.data).message;
    if (last.kind !== "step_proposed" || last.step === null) return;
    if (b.action === "replan") {
      await this.#replan(m, last, b.nextAttempt, b.digest);
      return;
    }
    await this.#host.emit("step_proposed", {
      // Its tier assignment embeds it: leave it room under the frame limit.
      headroom: ASSIGNMENT_OVERHEAD_BYTES,
      id: `prop-${m.run}-${last.step}-${b.nextAttempt}`,
      run: m.run,
      step: last.step,
      attempt: b.nextAttempt,
      body: { ...last.body, replanOf: null, usage: null },
      trace: m.trace,
    });
  }

  /**
   * A new action for the failed step, from the model, which sees what failed and why. The
   * identical action is never proposed again (it is on the avoid list and would be refused).
   */
  async #replan(
    m: Message,
    last: MessageOf<"step_proposed">,
    attempt: number,
    failedDigest: string,
  ): Promise<void> {
    const task = await this.#loadTask(m.run);
    if (task.body.program !== "freeform" || !this.#llm) {
      throw new ValidationError(
        "unsupported",
        `the deterministic planner cannot replan step ${last.step ?? 0} of run ${m.run}: order a retry, a rollback or a human decision instead`,
      );
    }
    const history = (await this.#history(m.run)).filter(
      (h) => h.tool !== last.body.tool || JSON.stringify(h.args) !== JSON.stringify(last.body.args),
    );
    const failed =
      (await this.#history(m.run))
        .reverse()
        .find(
          (h) =>
            h.tool === last.body.tool && JSON.stringify(h.args) === JSON.stringify(last.body.args),
        ) ?? null;
    const next = await planNextWithLlm(this.#llm, this.#tools, task.body, history, failed);
    if (!next)
      throw new ValidationError(
        "unsupported",
        `the model found no other action for step ${last.step ?? 0} of run ${m.run}`,
      );
    if (
      next.step.tool === last.body.tool &&
      JSON.stringify(next.step.args) === JSON.stringify(last.body.args)
    ) {
      throw new ValidationError(
        "unsupported",
        `the model proposed the failed action for step ${last.step ?? 0} again; it is on the avoid list`,
      );
    }
    const index = last.body.index;
    await this.#host.emit("step_proposed", {
      // Its tier assignment embeds it: leave it room under the frame limit.
      headroom: ASSIGNMENT_OVERHEAD_BYTES,
      id: `prop-${m.run}-${index}-${attempt}`,
      run: m.run,
      step: index,
      attempt,
      body: {
        ...next.step,
        args: await this.#host.payloads.store(next.step.args),
        index,
        total: next.last ? index + 1 : Math.max(last.body.total, index + 2),
        replanOf: failedDigest,
        usage: next.usage,
        requestedBy: task.body.requestedBy,
      },
      trace: m.trace,
    });
  }
}
