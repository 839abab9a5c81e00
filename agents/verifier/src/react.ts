import type { ErrorCode, Message, MessageOf, Tier } from "@trias/protocol";
import type { LoadedPolicy, RunView } from "@trias/policy";
import { maxTier } from "@trias/protocol";
import { nextPhase, type RunState } from "@trias/runstate";
import { AUTHORISATION_CHECKS } from "./audit.js";
import { decideRecovery, nextCompensation, type Decision, type EffectUndo } from "./recovery.js";
import { policyDenial, reviewStop, stepFailure } from "./reasons.js";
import { onPolicyRollout } from "./rollout.js";

/**
 * Executor refusals that mean the step as routed will never run: the run ends there, with
 * the executor's reason, instead of waiting for an execution that cannot come.
 */
export const STEP_REFUSALS: ReadonlySet<ErrorCode> = new Set<ErrorCode>([
  "quorum_not_met",
  "tier_downgrade",
  "policy_denied",
  "policy_digest_mismatch",
  "payload_too_large",
  "payload_unavailable",
  "scope_denied",
]);

/** What the verifier does with one message: verify an execution (I/O), or a decision. */
export type Reaction = { kind: "verify" } | Decision;

export interface ReactContext {
  /** This verifier's key id: it decides only on its own verifications. */
  self: string;
  /** The state machine found the message illegal (why), or not. */
  violation: string | undefined;
  policy: LoadedPolicy;
  now: number;
  /** Every effect of the run with its declared undo; read from the trace when needsUndo says so. */
  undo: readonly EffectUndo[];
}

/**
 * Pure: what the verifier does with a message, given the run's state after it. Everything it
 * needs from outside (the time, the run's effects and their undo) comes in `ctx`, so a
 * replay of the trace reaches the same decisions (react.test.ts).
 */
export function react(st: RunState, m: Message, ctx: ReactContext): Reaction {
  const { violation } = ctx;
  switch (m.kind) {
    case "step_executed":
      // An effect that the trace does not authorise: halt the run before anything else runs.
      if (violation)
        return quarantine(
          st,
          m.attempt,
          `execution not backed by the trace: ${violation}`,
          m.body.digest,
        );
      return { kind: "verify" };
    case "step_verified":
      if (violation || m.sender !== ctx.self) return { kind: "none" };
      return afterVerification(st, m, ctx);
    case "recovery_decided":
      if (violation) return { kind: "none" };
      return afterRecovery(st, m, ctx);
    case "tier_assigned":
      if (m.body.denied !== null && !violation)
        return {
          kind: "close",
          outcome: "rejected",
          reason: policyDenial(m.step, m.body.environment, m.body.denied),
        };
      return { kind: "none" };
    case "verdict": {
      const step = st.current === null ? undefined : st.steps[st.current];
      if (
        m.body.decision !== "approve" &&
        !violation &&
        step?.digest === m.body.digest &&
        st.phase === "vetoed"
      ) {
        return {
          kind: "close",
          outcome: "rejected",
          // The key id is `<identity>:<thumbprint>` (docs/receipts.md): the reviewer's name.
          reason: reviewStop(
            m.sender.split(":")[0] ?? m.sender,
            m.body.decision,
            m.step,
            m.body.reasons,
          ),
        };
      }
      return { kind: "none" };
    }
    case "message_rejected":
      return afterRejection(st, m);
    case "task_submitted":
    case "step_proposed":
    case "run_closed":
    // An erasure (docs/privacy.md) changes no run: the fold records it, nothing follows.
    case "subject_erased":
    // A rate-limit hold only says why the run waits: the router routes the step later.
    case "step_held":
      return { kind: "none" };
  }
}

/** Pure: whether react needs the run's effects and their undo for this message (a read of the trace). */
export function needsUndo(m: Message): boolean {
  return (
    (m.kind === "step_verified" &&
      (m.body.verdict !== "passed" || m.body.compensationOf !== null)) ||
    (m.kind === "recovery_decided" && m.body.action === "rollback")
  );
}

function afterRejection(st: RunState, m: MessageOf<"message_rejected">): Decision {
  const b = m.body;
  if (b.subject.includes(".task_submitted.") && b.by === "proposer") {
    // The proposer cannot plan the task: nothing will ever be proposed for it.
    return {
      kind: "close",
      outcome: "rejected",
      reason: `the proposer refused the task: ${b.reason}`,
    };
  }
  const cur = st.current === null ? undefined : st.steps[st.current];
  if (b.by === "proposer" && b.subject.includes(".recovery_decided.") && st.phase !== "escalated") {
    // The proposer cannot carry out the recovery (no replan possible): a human decides.
    return escalate(
      st,
      `the proposer could not carry out the recovery (${b.reason}): a human decides`,
    );
  }
  if (b.by === "proposer" && b.subject.includes(".step_verified.") && st.phase === "passed") {
    // The proposer cannot propose the next step (an argument too large to send, say): the
    // run would wait for it for ever, so a human decides (DESIGN.md, 12).
    return escalate(
      st,
      `the proposer could not propose the step after step ${st.current ?? 0} (${b.code}: ${b.reason}): a human decides`,
    );
  }
  if (b.by !== "executor") return { kind: "none" };
  const rollout = onPolicyRollout(st, b);
  if (rollout) return rollout;
  const aboutRecovery = b.subject.includes(".recovery_decided.");
  if (STEP_REFUSALS.has(b.code as ErrorCode) && !aboutRecovery) {
    const reason = `the executor refused step ${st.current ?? 0} (${b.code}): ${b.reason}`;
    // Closing is refused while the trace says the step may run (its quorum looks met, as
    // with a forged light assignment): a quarantine halts it, then the run closes.
    return nextPhase(st.phase, "close_failed") !== null
      ? { kind: "close", outcome: "rejected", reason }
      : quarantine(st, m.attempt, reason);
  }
  if (aboutRecovery && unauthorisedSteps(st).length > 0 && st.phase !== "quarantined") {
    // The executor would not undo an unauthorised effect: halt the run as it is.
    return quarantine(
      st,
      m.attempt,
      `an unauthorised execution could not be compensated (${b.code}: ${b.reason})`,
    );
  }
  if (aboutRecovery && st.phase !== "escalated") {
    // The executor refused a recovery order: recovery cannot go on by itself.
    const why = `the executor refused a recovery order (${b.code}: ${b.reason})`;
    // A refused compensation leaves the run in compensation_ordered, where only a quarantine
    // is legal (transitions.ts): it halts the run and closes it with this reason, so the run
    // never waits for a compensation that will not come (docs/design.md, invariant 12).
    if (nextPhase(st.phase, "escalate") === null)
      return quarantine(st, m.attempt, `${why}; the run is halted instead of waiting for it`);
    return escalate(st, `${why}: a human decides`, cur?.attempt ?? 0);
  }
  return { kind: "none" };
}

function afterVerification(
  st: RunState,
  m: MessageOf<"step_verified">,
  ctx: ReactContext,
): Decision {
  const b = m.body;
  const unauthorised = b.checks.filter((x) => !x.ok && AUTHORISATION_CHECKS.has(x.name));
  if (unauthorised.length > 0 && b.compensationOf === null) {
    // Not a failed outcome but an effect without valid authorisation: undo it where the
    // tool pack can, then halt the run and close it (DESIGN.md invariants 5 and 12).
    const why = `step ${b.index} executed without valid authorisation: ${unauthorised.map((x) => `${x.name}: ${x.detail}`).join("; ")}`;
    const c = nextCompensation(
      st,
      ctx.undo.filter((u) => u.effect.digest === b.digest),
    );
    if (c.kind === "recover") return { ...c, reason: `${why}; undoing it before quarantine` };
    return quarantine(st, m.attempt, `${why}; nothing of it can be undone`, b.digest);
  }
  if (b.compensationOf !== null && unauthorisedSteps(st).length > 0) {
    // The undo of an unauthorised effect: whatever it gave, the run halts here.
    const why = unauthorisedSteps(st)
      .map((i) => {
        const bad = st.steps[i]?.verification?.checks.filter(
          (c) => !c.ok && AUTHORISATION_CHECKS.has(c.name),
        );
        return `step ${i} executed without valid authorisation (${(bad ?? []).map((c) => c.name).join(", ")})`;
      })
      .join("; ");
    return quarantine(st, m.attempt, `${why}; its compensation ${b.verdict}`, b.digest);
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
    return nextCompensation(st, ctx.undo);
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
  const outcome = step.execution?.outcome ?? "error";
  const tier = step.tier ?? "full";
  return decideRecovery(
    step,
    {
      verdict: b.verdict,
      outcome,
      reason: stepFailure({
        index: b.index,
        tool: b.tool,
        attempt: m.attempt,
        verdict: b.verdict,
        outcome,
        checks: b.checks,
      }),
    },
    ctx.policy.doc.tiers[tier],
    ctx.undo,
    ctx.now,
    st.program === "freeform",
  );
}

function afterRecovery(
  st: RunState,
  m: MessageOf<"recovery_decided">,
  ctx: ReactContext,
): Decision {
  switch (m.body.action) {
    case "rollback":
      return nextCompensation(st, ctx.undo);
    case "quarantine":
      // A person's cancel or resolution closes as what they said (the fold checked the role).
      return { kind: "close", outcome: m.body.ends ?? "quarantined", reason: m.body.reason };
    case "retry":
    case "replan":
    case "compensate":
    case "escalate":
      return { kind: "none" };
  }
}

/** A quarantine order: the run halts (nothing more executes), then closes with `reason`. */
export function quarantine(
  st: RunState,
  attempt: number,
  reason: string,
  digest?: string,
): Decision {
  const cur = st.current === null ? undefined : st.steps[st.current];
  const d = digest ?? cur?.digest ?? "0".repeat(64);
  return {
    kind: "recover",
    action: "quarantine",
    reason,
    digest: d,
    nextAttempt: attempt,
    notBefore: null,
    avoid: [d],
    compensation: null,
    evidence: null,
  };
}

function escalate(st: RunState, reason: string, attempt?: number): Decision {
  const cur = st.current === null ? undefined : st.steps[st.current];
  return {
    kind: "recover",
    action: "escalate",
    reason,
    digest: cur?.digest || "0".repeat(64),
    nextAttempt: attempt ?? cur?.attempt ?? 0,
    notBefore: null,
    avoid: [],
    compensation: null,
    evidence: null,
  };
}

/**
 * Pure: what the verifier knows of a run that bears on a step's requirement, from its state
 * (the facts the router counted when it routed the step: proposals, failed verifications,
 * the tiers earlier attempts of the step were given).
 */
export function runView(st: RunState, step: number): RunView {
  let floor: Tier = "light";
  for (const h of st.steps[step]?.history ?? [])
    if (h.tier !== null) floor = maxTier(floor, h.tier);
  return {
    proposals: Math.max(1, st.counts.proposals),
    failures: st.counts.notPassed,
    stepFloor: floor,
  };
}

/** Pure: the steps of a run whose execution failed an authorisation check (not an outcome check). */
export function unauthorisedSteps(st: RunState): number[] {
  const out: number[] = [];
  for (const s of st.steps) {
    if (s?.verification?.checks.some((c) => !c.ok && AUTHORISATION_CHECKS.has(c.name)))
      out.push(s.index);
  }
  return out;
}
