import {
  SENDERS,
  canonicalBytes,
  parseSubject,
  proposalDigest,
  sha256Hex,
  tierRank,
  type Message,
  type MessageOf,
  type PersonEnd,
  type Role,
  type RunOutcome,
  type Tier,
} from "@trias/protocol";
import type {
  EffectRecord,
  PendingCompensation,
  RunState,
  StepState,
  TraceEvent,
  Violation,
} from "./state.js";
import { nextPhase, type Phase, type RunEvent } from "./transitions.js";

/**
 * A classified event: which table event it is, which step it concerns, and the change it
 * makes. `apply` runs only after the table and every guard have accepted the event, so an
 * illegal event never touches the state.
 */
interface Plan {
  event: RunEvent | null; // null: a record (message_rejected) that is never a transition
  step: number | null;
  apply: (s: RunState) => void;
}

/** An illegal event, with the violation code it is recorded under (default illegal_transition). */
type Classified = Plan | { illegal: string; code?: Violation["code"] };

export function initialRunState(run: string): RunState {
  return {
    run,
    status: "new",
    phase: "new",
    outcome: null,
    program: null,
    goal: null,
    current: null,
    steps: [],
    effects: [],
    recovery: {
      last: null,
      avoid: [],
      avoidActions: [],
      rollback: false,
      cursor: null,
      pending: null,
    },
    counts: {
      applied: 0,
      violations: 0,
      rejections: 0,
      proposals: 0,
      assignments: 0,
      verdicts: 0,
      approvals: 0,
      vetoes: 0,
      executions: 0,
      executionErrors: 0,
      verifications: 0,
      passed: 0,
      notPassed: 0,
      retries: 0,
      reroutes: 0,
      replans: 0,
      rollbacks: 0,
      compensations: 0,
      escalations: 0,
      quarantines: 0,
    },
    lastSeq: 0,
    messageIds: [],
    transitions: [],
    violations: [],
    rejections: [],
    closed: null,
    ended: null,
    held: null,
  };
}

/** Fold one event into a copy of `state`. Never throws: anything wrong becomes a violation. */
export function reduce(state: RunState, event: TraceEvent): RunState {
  const draft = structuredClone(state);
  if (applyEvent(draft, event) !== "failed") return draft;
  const clean = structuredClone(state);
  recordViolation(clean, event, "event could not be applied");
  return clean;
}

/**
 * `reduce` for an owner that keeps one state per run and needs no history of states: applies
 * the event to `state` itself. Returns false when applying threw part-way, leaving `state`
 * unusable: the caller must fold the run again (from the stream). Same result as `reduce`.
 */
export function advance(state: RunState, event: TraceEvent): boolean {
  return applyEvent(state, event) !== "failed";
}

/** The state of a run after its whole trace, in the order given (stream order). */
export function foldRun(events: Iterable<TraceEvent>, run?: string): RunState {
  const name = (ev: TraceEvent | undefined): string =>
    run ?? (typeof ev?.message?.run === "string" ? ev.message.run : "");
  const list = [...events];
  // One private draft for the whole fold: reduce() would clone once per event for nothing.
  let state = initialRunState(name(list[0]));
  const failed = new Set<number>();
  for (let i = 0; i < list.length; i++) {
    const ev = list[i] as TraceEvent;
    if (applyEvent(state, ev) !== "failed") continue;
    // The draft may be half-changed: rebuild it without this event, which is only recorded.
    failed.add(i);
    state = initialRunState(name(list[0]));
    for (let j = 0; j <= i; j++) {
      const prev = list[j] as TraceEvent;
      if (failed.has(j)) recordViolation(state, prev, "event could not be applied");
      else applyEvent(state, prev);
    }
  }
  return state;
}

/** Mutates `s` in place. "failed" means `apply` threw and `s` may be half-changed. */
function applyEvent(s: RunState, ev: TraceEvent): "applied" | "violation" | "failed" {
  let c: Classified;
  try {
    c = classify(s, ev);
  } catch (e) {
    // A malformed event the types did not foresee (the caller passed something odd): it is
    // still only a violation, because a fold that throws would hide the rest of the trace.
    c = {
      illegal: `event could not be interpreted: ${e instanceof Error ? e.message : String(e)}`,
    };
  }
  if ("illegal" in c) {
    recordViolation(s, ev, c.illegal, c.code);
    return "violation";
  }
  const from = s.phase;
  let to: Phase = from;
  if (c.event !== null) {
    const next = nextPhase(from, c.event);
    if (next === null) {
      recordViolation(s, ev, tableReason(s, ev, c.event));
      return "violation";
    }
    to = next;
  }
  try {
    c.apply(s);
    s.lastSeq = ev.seq;
    s.messageIds.push(ev.message.id);
    s.counts.applied++;
    if (to !== from) {
      moveTo(s, to, ev.seq, c.step);
      // A hold explains a wait in one phase: routed, retried or closed, the step has moved on.
      s.held = null;
    }
    settleQuorum(s, ev.seq);
  } catch {
    return "failed";
  }
  return "applied";
}

function recordViolation(
  s: RunState,
  ev: TraceEvent,
  reason: string,
  code: Violation["code"] = "illegal_transition",
): void {
  // The event may be anything (that is one way to be illegal), so read it defensively.
  const m = ev.message as Partial<Message> | null | undefined;
  const v: Violation = {
    seq: typeof ev.seq === "number" ? ev.seq : -1,
    kind: typeof m?.kind === "string" ? m.kind : "unknown",
    step: typeof m?.step === "number" ? m.step : null,
    sender: typeof m?.sender === "string" ? m.sender : "",
    code,
    phase: s.phase,
    reason,
  };
  s.violations.push(v);
  s.counts.violations = s.violations.length;
}

function moveTo(s: RunState, to: Phase, seq: number, step: number | null): void {
  s.transitions.push({ from: s.phase, to, seq, step });
  s.phase = to;
  if (to === "closed") s.status = "closed";
  if (to === "quarantined") s.status = "quarantined";
  if (step !== null && step === s.current) {
    const st = s.steps[step];
    if (st) st.phase = to;
  }
}

/** Quorum is derived: the verdict (or assignment) that completes it moves routed -> approved. */
function settleQuorum(s: RunState, seq: number): void {
  const st = s.current === null ? undefined : s.steps[s.current];
  if (!st) return;
  if (s.phase === "routed" && quorum(st).met && nextPhase(s.phase, "quorum") !== null) {
    st.quorumMet = true;
    moveTo(s, "approved", seq, st.index);
  } else if (s.phase === "approved" && !quorum(st).met) {
    st.quorumMet = false;
    moveTo(s, "routed", seq, st.index);
  }
}

// ---------------------------------------------------------------------------------------
// Classification: which table event, and every guard that binds it to what came before.
// Guards run only for events the table allows in the current phase (otherwise a no-op plan
// goes back and the table refuses it), so a misplaced event is reported as misplaced rather
// than against a guard that was never meant for that phase.

function classify(s: RunState, ev: TraceEvent): Classified {
  const m = ev.message;
  if (!m || typeof m !== "object" || typeof m.kind !== "string")
    return { illegal: "event carries no message" };
  if (!Number.isSafeInteger(ev.seq) || ev.seq <= 0)
    return { illegal: `stream sequence ${String(ev.seq)} is not a positive integer` };
  // Where an event comes from is checked before whether the run may still take it, so a
  // splice, a move or a duplicate is named as such even after the run closed.
  if (m.run !== s.run) return { illegal: `message belongs to run ${m.run}, not ${s.run}` };
  const subj = parseSubject(ev.subject);
  if (subj === null || subj.kind !== m.kind || subj.run !== m.run || subj.role !== m.role) {
    return {
      illegal: `subject ${ev.subject} does not match the envelope (${m.role} ${m.kind} ${m.run})`,
    };
  }
  if (!SENDERS[m.kind].includes(m.role))
    return { illegal: `role ${m.role} may not send ${m.kind}` };
  if (ev.seq <= s.lastSeq)
    return {
      illegal: `seq ${ev.seq} is not after the last applied seq ${s.lastSeq}: out of stream order`,
    };
  if (s.messageIds.includes(m.id))
    return { illegal: `message ${m.id} was already applied: duplicate` };
  const after = afterClose(s, m.kind);
  if (after !== null) return { illegal: after, code: "run_closed" };
  // A verdict can only be late here (the phase is not under review): recorded, no effect.
  if (
    s.status === "quarantined" &&
    m.kind !== "message_rejected" &&
    m.kind !== "run_closed" &&
    m.kind !== "verdict"
  ) {
    return { illegal: `run quarantined: no further ${m.kind} is accepted` };
  }

  switch (m.kind) {
    case "message_rejected":
      return rejected(m, ev);
    case "task_submitted":
      return submitted(m);
    case "step_proposed":
      return proposed(s, m, ev);
    case "tier_assigned":
      return assigned(s, m, ev);
    case "verdict":
      return verdict(s, m, ev);
    case "step_executed":
      return m.body.compensationOf === null ? executed(s, m, ev) : compensationExecuted(s, m, ev);
    case "step_verified":
      return m.body.compensationOf === null ? verified(s, m, ev) : compensationVerified(s, m, ev);
    case "recovery_decided":
      return recovery(s, m, ev);
    case "run_closed":
      return closed(s, m, ev);
    case "step_held":
      return held(s, m, ev);
    case "subject_erased":
      // An erasure is a run of its own with nothing to drive; inside a task's run it is misplaced.
      return {
        illegal: "subject_erased is recorded in its own erasure run, never in a task's run",
      };
  }
}

/**
 * The one rule for what a sealed run (one whose run_closed is applied) still takes: a record
 * of a refusal, and a slow reviewer's verdict, which the fold then records as late (or finds
 * illegal) and which changes no phase. Everything else is refused with code `run_closed`:
 * a closed run stays closed (docs/receipts.md, "After the receipt"). Returns the reason, or
 * null when the run is not sealed or the kind may still come.
 */
export function afterClose(
  s: { closed: { seq: number } | null; status: RunState["status"] },
  kind: string,
): string | null {
  if (s.closed === null || kind === "message_rejected" || kind === "verdict") return null;
  return `run ${s.status === "quarantined" ? "quarantined and sealed" : "closed"} at seq ${s.closed.seq}: nothing may follow run_closed, a ${kind} is refused`;
}

/** A record of why the current step waits (its tool's rate limit); it changes no phase. */
function held(s: RunState, m: MessageOf<"step_held">, ev: TraceEvent): Classified {
  const step = s.current === null ? undefined : s.steps[s.current];
  if (!step || m.step !== step.index || m.attempt !== step.attempt || s.phase !== "proposed")
    return {
      illegal: `a hold of step ${String(m.step)} attempt ${m.attempt} while the current step is ${String(s.current)} in phase ${s.phase}: only a proposed step waits for the router`,
    };
  return {
    event: null,
    step: step.index,
    apply: (st) => {
      st.held = {
        step: step.index,
        attempt: m.attempt,
        tool: m.body.tool,
        reason: m.body.reason,
        until: m.body.until,
        seq: ev.seq,
      };
    },
  };
}

function rejected(m: MessageOf<"message_rejected">, ev: TraceEvent): Plan {
  return {
    event: null,
    step: m.step,
    apply: (s) => {
      s.rejections.push({
        seq: ev.seq,
        code: m.body.code,
        reason: m.body.reason,
        subject: m.body.subject,
        rejectedSeq: m.body.seq,
        messageId: m.body.messageId,
        sender: m.body.sender,
        by: m.body.by,
      });
      s.counts.rejections++;
    },
  };
}

function submitted(m: MessageOf<"task_submitted">): Plan {
  return {
    event: "submit",
    step: null,
    apply: (s) => {
      s.status = "open";
      s.program = m.body.program;
      s.goal = m.body.goal;
    },
  };
}

function proposed(s: RunState, m: MessageOf<"step_proposed">, ev: TraceEvent): Classified {
  const b = m.body;
  if (m.step !== b.index)
    return { illegal: `envelope step ${String(m.step)} differs from proposal index ${b.index}` };
  const cur = s.current;
  const key = actionKey(b.tool, b.args);
  if ((cur === null && b.index === 0) || (cur !== null && b.index === cur + 1)) {
    if (nextPhase(s.phase, "propose_next") === null)
      return { event: "propose_next", step: b.index, apply: () => {} };
    if (b.replanOf !== null)
      return { illegal: `the first proposal of step ${b.index} cannot replace ${b.replanOf}` };
    return {
      event: "propose_next",
      step: b.index,
      apply: (st) => {
        st.steps[b.index] = newStep(m, ev, null);
        st.current = b.index;
        st.counts.proposals++;
      },
    };
  }
  if (cur === null || b.index !== cur) {
    const where = cur === null ? "no step has been proposed yet" : `step ${cur} is current`;
    return { illegal: `proposal for step ${b.index} while ${where}: skipped or reordered step` };
  }
  const step = s.steps[cur];
  if (!step) return { illegal: `step ${cur} has no state` };
  if (nextPhase(s.phase, "propose_again") === null)
    return { event: "propose_again", step: cur, apply: () => {} };
  if (m.attempt <= step.attempt) {
    return {
      illegal: `proposal attempt ${m.attempt} for step ${cur} does not follow attempt ${step.attempt}`,
    };
  }
  const last = s.recovery.last;
  if (
    (s.phase === "retrying" || s.phase === "replanning") &&
    last !== null &&
    m.attempt !== last.nextAttempt
  ) {
    return {
      illegal: `recovery at seq ${last.seq} ordered attempt ${last.nextAttempt}, proposal is attempt ${m.attempt}`,
    };
  }
  if (s.phase !== "retrying" && step.digest !== null && b.replanOf !== step.digest) {
    return {
      illegal: `a new plan for step ${cur} must name the proposal it replaces (${step.digest}), not ${String(b.replanOf)}`,
    };
  }
  if (s.phase === "retrying" && b.replanOf !== null && b.replanOf !== step.digest) {
    return {
      illegal: `retry of step ${cur} names ${b.replanOf}, which is not its current proposal`,
    };
  }
  if (s.recovery.avoidActions.includes(`${cur}|${key}`)) {
    return {
      illegal: `step ${cur} proposes ${b.tool} with arguments a recovery decision put on the avoid list`,
    };
  }
  return {
    event: "propose_again",
    step: cur,
    apply: (st) => {
      const old = st.steps[cur];
      if (!old) return;
      st.steps[cur] = newStep(m, ev, old);
      st.counts.proposals++;
    },
  };
}

function newStep(m: MessageOf<"step_proposed">, ev: TraceEvent, prev: StepState | null): StepState {
  const b = m.body;
  const history = prev ? [...prev.history, summarize(prev)] : [];
  return {
    index: b.index,
    attempt: m.attempt,
    phase: "proposed",
    digest: null,
    tool: b.tool,
    args: b.args,
    total: b.total,
    replanOf: b.replanOf,
    proposalFrame: sha256Hex(ev.frame),
    proposer: m.sender,
    router: null,
    executor: null,
    tier: null,
    tierFloor: prev?.tierFloor ?? null,
    requires: null,
    policyDigest: null,
    denied: null,
    assignmentFrames: [],
    approvals: [],
    approvalFrames: [],
    vetoes: [],
    quorumMet: false,
    execution: null,
    verification: null,
    compensated: prev?.compensated ?? false,
    late: prev?.late ?? [],
    history,
    digests: prev?.digests ?? [],
  };
}

function summarize(st: StepState) {
  return {
    attempt: st.attempt,
    digest: st.digest,
    tool: st.tool,
    tier: st.tier,
    execution: st.execution?.outcome ?? null,
    verdict: st.verification?.verdict ?? null,
    vetoed: st.vetoes.length > 0,
    denied: st.denied,
  };
}

function assigned(s: RunState, m: MessageOf<"tier_assigned">, ev: TraceEvent): Classified {
  const b = m.body;
  const step = s.current === null ? undefined : s.steps[s.current];
  if (!step || m.step !== step.index) {
    return {
      illegal: `tier assignment for step ${String(m.step)} while the current step is ${String(s.current)}`,
    };
  }
  const again = s.phase === "routed" || s.phase === "approved";
  const event: RunEvent = b.denied !== null ? "deny" : again ? "raise" : "assign";
  // Only guard what the table allows; a misplaced assignment gets the table's reason.
  if (nextPhase(s.phase, event) === null) return { event, step: step.index, apply: () => {} };
  if (sha256Hex(b.proposal) !== step.proposalFrame) {
    return {
      illegal: `tier assignment does not embed the stored proposal of step ${step.index} verbatim`,
    };
  }
  const expected = proposalDigest({
    tool: step.tool,
    args: step.args,
    run: s.run,
    step: step.index,
    attempt: step.attempt,
    policyDigest: b.policyDigest,
  });
  if (b.digest !== expected)
    return {
      illegal: `digest ${b.digest} does not bind step ${step.index}'s proposal (expected ${expected})`,
    };
  if (m.attempt !== step.attempt)
    return {
      illegal: `assignment for attempt ${m.attempt}, step ${step.index} is at attempt ${step.attempt}`,
    };
  if (again && b.digest !== step.digest)
    return { illegal: `a second assignment of step ${step.index} names another digest` };
  if (step.tierFloor !== null && tierRank(b.tier) < tierRank(step.tierFloor)) {
    return { illegal: `tier downgrade: step ${step.index} was ${step.tierFloor}, now ${b.tier}` };
  }
  if (again && step.tier !== null && b.denied === null && tierRank(b.tier) <= tierRank(step.tier)) {
    return {
      illegal: `step ${step.index} is already ${step.tier}: a second assignment may only raise the tier`,
    };
  }
  if (m.sender === step.proposer)
    return { illegal: `key ${m.sender} proposed step ${step.index} and cannot also route it` };
  const frame = sha256Hex(ev.frame);
  return {
    event,
    step: step.index,
    apply: (st) => {
      const x = st.steps[step.index];
      if (!x) return;
      if (!again) {
        x.approvals = [];
        x.approvalFrames = [];
        x.vetoes = [];
        x.quorumMet = false;
        x.assignmentFrames = [];
      }
      x.digest = b.digest;
      x.tier = b.tier;
      x.tierFloor = x.tierFloor === null ? b.tier : maxTierOf(x.tierFloor, b.tier);
      x.requires = b.requires;
      x.policyDigest = b.policyDigest;
      x.denied = b.denied;
      x.router = m.sender;
      x.assignmentFrames.push(frame);
      if (!x.digests.some((d) => d.digest === b.digest)) {
        x.digests.push({ digest: b.digest, attempt: x.attempt, action: actionKey(x.tool, x.args) });
      }
      st.counts.assignments++;
    },
  };
}

function verdict(s: RunState, m: MessageOf<"verdict">, ev: TraceEvent): Classified {
  const b = m.body;
  if ((m.role === "human") !== (b.strategy === "human")) {
    return {
      illegal: `a ${m.role} key cannot give a ${b.strategy} verdict: the human strategy is for human keys only`,
    };
  }
  const step = m.step === null ? undefined : s.steps[m.step];
  if (!step) return { illegal: `verdict for step ${String(m.step)}, which was never proposed` };
  if (m.sender === step.proposer || m.sender === step.router || m.sender === step.executor) {
    return {
      illegal: `key ${m.sender} already holds another role in step ${step.index}: it cannot also judge it`,
    };
  }
  const judged =
    step.approvals.some((a) => a.kid === m.sender) ||
    step.vetoes.some((v) => v.kid === m.sender) ||
    step.late.some((l) => l.kid === m.sender && l.digest === b.digest);
  const underReview =
    step.index === s.current &&
    (s.phase === "routed" || s.phase === "approved") &&
    b.digest === step.digest;
  if (underReview) {
    if (judged)
      return {
        illegal: `reviewer ${m.sender} already judged ${b.digest}: N approvals need N distinct keys`,
      };
    if (m.attempt !== step.attempt)
      return {
        illegal: `verdict for attempt ${m.attempt}, step ${step.index} is at attempt ${step.attempt}`,
      };
    if (!step.assignmentFrames.includes(sha256Hex(b.assignment))) {
      return { illegal: `verdict does not embed a stored tier assignment of step ${step.index}` };
    }
    const frame = sha256Hex(ev.frame);
    if (b.decision === "approve") {
      return {
        event: "approve",
        step: step.index,
        apply: (st) => {
          const x = st.steps[step.index];
          if (!x) return;
          x.approvals.push({ kid: m.sender, role: m.role, strategy: b.strategy, seq: ev.seq });
          x.approvalFrames.push(frame);
          st.counts.verdicts++;
          st.counts.approvals++;
        },
      };
    }
    const decision = b.decision;
    return {
      event: "veto",
      step: step.index,
      apply: (st) => {
        const x = st.steps[step.index];
        if (!x) return;
        x.vetoes.push({
          kid: m.sender,
          role: m.role,
          strategy: b.strategy,
          decision,
          reasons: b.reasons,
          seq: ev.seq,
        });
        st.counts.verdicts++;
        st.counts.vetoes++;
      },
    };
  }
  // A slow reviewer is a race, not an attack; but the digest must be one this step was bound to.
  const known = step.digests.some((d) => d.digest === b.digest);
  if (!known)
    return {
      illegal: `verdict on digest ${b.digest}, which no assignment of step ${step.index} bound`,
    };
  if (
    judged &&
    (b.digest === step.digest || step.late.some((l) => l.kid === m.sender && l.digest === b.digest))
  ) {
    return { illegal: `reviewer ${m.sender} already judged ${b.digest}` };
  }
  return {
    event: "late_verdict",
    step: step.index,
    apply: (st) => {
      st.steps[step.index]?.late.push({
        kid: m.sender,
        digest: b.digest,
        decision: b.decision,
        seq: ev.seq,
      });
      st.counts.verdicts++;
    },
  };
}

function executed(s: RunState, m: MessageOf<"step_executed">, ev: TraceEvent): Classified {
  const b = m.body;
  if (m.step !== b.index)
    return { illegal: `envelope step ${String(m.step)} differs from execution index ${b.index}` };
  const step = s.current === null ? undefined : s.steps[s.current];
  if (!step || b.index !== step.index) {
    return {
      illegal: `execution of step ${b.index} while the current step is ${String(s.current)}: skipped or reordered step`,
    };
  }
  if (nextPhase(s.phase, "execute") === null)
    return { event: "execute", step: step.index, apply: () => {} };
  if (b.digest !== step.digest)
    return {
      illegal: `execution names digest ${b.digest}, step ${step.index} was approved as ${String(step.digest)}`,
    };
  const retry = s.phase === "retrying";
  const last = s.recovery.last;
  if (retry) {
    if (!step.quorumMet)
      return {
        illegal: `retry re-execution of step ${step.index} without a quorum for ${b.digest}: propose it again`,
      };
    if (last !== null && m.attempt !== last.nextAttempt) {
      return {
        illegal: `recovery at seq ${last.seq} ordered attempt ${last.nextAttempt}, execution is attempt ${m.attempt}`,
      };
    }
    if (
      s.recovery.avoid.includes(b.digest) ||
      s.recovery.avoidActions.includes(`${step.index}|${actionKey(b.tool, b.args)}`)
    ) {
      return { illegal: `step ${step.index} re-executes an action on the avoid list unchanged` };
    }
  } else if (m.attempt !== step.attempt) {
    return {
      illegal: `execution attempt ${m.attempt} differs from the approved attempt ${step.attempt}`,
    };
  }
  if (b.tool !== step.tool || !sameBytes(canonicalBytes(b.args), canonicalBytes(step.args))) {
    return {
      illegal: `step ${step.index} executed ${b.tool} with arguments other than the approved ones`,
    };
  }
  if (b.tier !== step.tier)
    return {
      illegal: `execution reports tier ${b.tier}, step ${step.index} is ${String(step.tier)}`,
    };
  const kids = step.approvals.map((a) => a.kid);
  const foreign = b.approvals.filter((k) => !kids.includes(k));
  if (foreign.length > 0)
    return { illegal: `execution counts approvals the trace does not hold: ${foreign.join(", ")}` };
  if (new Set(b.approvals).size !== b.approvals.length)
    return { illegal: "execution counts one reviewer key twice" };
  const lastAssignment = step.assignmentFrames[step.assignmentFrames.length - 1];
  // The evidence names frames by digest (frameRef): each must be one this run's trace holds.
  if (b.evidence.assignment !== lastAssignment) {
    return {
      illegal: `execution evidence does not name the tier assignment in force for step ${step.index}`,
    };
  }
  if (b.evidence.approvals.some((d) => !step.approvalFrames.includes(d))) {
    return { illegal: "execution evidence names an approval frame the trace does not hold" };
  }
  if (m.sender === step.proposer || m.sender === step.router || kids.includes(m.sender)) {
    return {
      illegal: `key ${m.sender} already holds another role in step ${step.index}: it cannot also execute it`,
    };
  }
  if (s.effects.some((e) => e.effectId === b.effectId))
    return { illegal: `effect ${b.effectId} was already applied` };
  return {
    event: "execute",
    step: step.index,
    apply: (st) => {
      const x = st.steps[step.index];
      if (!x) return;
      if (retry) {
        x.history.push(summarize(x));
        x.attempt = m.attempt;
        x.verification = null;
      }
      x.executor = m.sender;
      x.execution = {
        seq: ev.seq,
        attempt: m.attempt,
        digest: b.digest,
        outcome: b.outcome,
        result: b.result,
        error: b.error,
        effectId: b.effectId,
        approvals: b.approvals,
      };
      st.counts.executions++;
      if (b.outcome === "error") st.counts.executionErrors++;
      else {
        st.effects.push({
          step: x.index,
          attempt: m.attempt,
          digest: b.digest,
          seq: ev.seq,
          effectId: b.effectId,
          tool: b.tool,
          compensations: [],
          compensated: false,
        });
        x.compensated = false;
      }
    },
  };
}

function verified(s: RunState, m: MessageOf<"step_verified">, ev: TraceEvent): Classified {
  const b = m.body;
  if (m.step !== b.index)
    return {
      illegal: `envelope step ${String(m.step)} differs from verification index ${b.index}`,
    };
  const step = s.current === null ? undefined : s.steps[s.current];
  if (!step || b.index !== step.index) {
    return {
      illegal: `verification of step ${b.index} while the current step is ${String(s.current)}`,
    };
  }
  // Uncertain is never passed: only "passed" moves a step forward.
  const event: RunEvent = b.verdict === "passed" ? "verify_pass" : "verify_fail";
  if (nextPhase(s.phase, event) === null) return { event, step: step.index, apply: () => {} };
  if (!step.execution || b.digest !== step.execution.digest || b.tool !== step.tool) {
    return {
      illegal: `verification names ${b.tool} ${b.digest}, which is not step ${step.index}'s execution`,
    };
  }
  if (m.sender === step.executor)
    return { illegal: `key ${m.sender} executed step ${step.index} and cannot also verify it` };
  if (event === "verify_pass" && step.execution.outcome !== "ok") {
    return {
      illegal: `step ${step.index}'s execution reported an error; it cannot pass verification`,
    };
  }
  return {
    event,
    step: step.index,
    apply: (st) => {
      const x = st.steps[step.index];
      if (!x) return;
      x.verification = { seq: ev.seq, verdict: b.verdict, checks: b.checks };
      st.counts.verifications++;
      if (b.verdict === "passed") st.counts.passed++;
      else st.counts.notPassed++;
    },
  };
}

/**
 * Which effect a compensation of (`step`, `of`) may undo: the latest such effect before the
 * last one compensated (reverse order), or that same one again if its compensation failed.
 */
function compensationTarget(s: RunState, step: number, of: string): number | string {
  const bound = s.recovery.cursor ?? s.effects.length;
  for (let j = Math.min(bound, s.effects.length - 1); j >= 0; j--) {
    const e = s.effects[j];
    if (!e || e.step !== step || e.digest !== of || e.compensated) continue;
    if (j < bound || (j === bound && e.compensations.length > 0)) return j;
  }
  const done = s.effects.find((e) => e.step === step && e.digest === of);
  if (!done) return `step ${step} has no applied effect ${of} to compensate`;
  if (done.compensated) return `step ${step}'s effect ${of} is already compensated`;
  return `compensation of step ${step} is out of reverse order: a later step's effect was compensated first`;
}

function recovery(s: RunState, m: MessageOf<"recovery_decided">, ev: TraceEvent): Classified {
  const b = m.body;
  // A retry of a step that never executed can only be a re-route (transitions.ts).
  const event: RunEvent =
    b.action === "retry" && (s.phase === "routed" || s.phase === "approved") ? "reroute" : b.action;
  if (nextPhase(s.phase, event) === null) return { event, step: s.current, apply: () => {} };
  const personal = personOnly(s.phase, event, m.role, b.ends);
  if (personal !== null) return { illegal: `${personal}, not ${m.role} ${m.sender}` };
  const step = s.current === null ? undefined : s.steps[s.current];
  const again = event === "retry" || event === "replan" || event === "reroute";
  if (again && (!step || b.digest !== step.digest)) {
    return { illegal: `${event} names ${b.digest}, which is not the current step's proposal` };
  }
  if (event === "reroute" && step && !refusedUnderAnotherPolicy(s, step.index)) {
    return {
      illegal: `a re-route of step ${step.index} needs the executor's policy_digest_mismatch refusal of its current attempt, and the trace holds none`,
    };
  }
  if (again && step && b.nextAttempt <= step.attempt) {
    return {
      illegal: `${event} orders attempt ${b.nextAttempt}, not after attempt ${step.attempt}`,
    };
  }
  let pending: PendingCompensation | null = null;
  if (event === "compensate") {
    const c = b.compensation;
    if (c === null)
      return { illegal: "a compensate order must carry the compensation it authorises" };
    const j = compensationTarget(s, c.step, c.of);
    if (typeof j === "string") return { illegal: j };
    pending = { effect: j, step: c.step, of: c.of, tool: c.tool, args: c.args, orderSeq: ev.seq };
  }
  const record = {
    seq: ev.seq,
    action: b.action,
    reason: b.reason,
    digest: b.digest,
    nextAttempt: b.nextAttempt,
    sender: m.sender,
    role: m.role,
  };
  return {
    event,
    step: pending?.step ?? s.current,
    apply: (st) => {
      st.recovery.last = record;
      for (const d of b.avoid) {
        if (!st.recovery.avoid.includes(d)) st.recovery.avoid.push(d);
        for (const x of st.steps) {
          for (const known of x?.digests ?? []) {
            const key = `${x.index}|${known.action}`;
            if (known.digest === d && !st.recovery.avoidActions.includes(key))
              st.recovery.avoidActions.push(key);
          }
        }
      }
      if (pending) {
        st.recovery.pending = pending;
        st.recovery.cursor = pending.effect;
      }
      if (event === "retry" && m.role === "human" && step) liftAvoid(st, step.index, b.digest);
      if (event === "retry") st.counts.retries++;
      if (event === "reroute") st.counts.reroutes++;
      if (event === "replan") st.counts.replans++;
      if (event === "rollback") {
        st.recovery.rollback = true;
        st.counts.rollbacks++;
      }
      if (event === "escalate") st.counts.escalations++;
      if (event === "quarantine") {
        st.counts.quarantines++;
        st.outcome = b.ends ?? "quarantined";
      }
      if (b.ends !== undefined)
        st.ended = { outcome: b.ends, sender: m.sender, reason: b.reason, seq: ev.seq };
    },
  };
}

function compensationExecuted(
  s: RunState,
  m: MessageOf<"step_executed">,
  ev: TraceEvent,
): Classified {
  const b = m.body;
  const of = b.compensationOf ?? "";
  if (m.step !== b.index)
    return { illegal: `envelope step ${String(m.step)} differs from execution index ${b.index}` };
  if (nextPhase(s.phase, "compensation_execute") === null)
    return { event: "compensation_execute", step: b.index, apply: () => {} };
  let target: PendingCompensation;
  const p = s.recovery.pending;
  if (s.phase === "compensation_ordered" && p !== null) {
    if (p.of !== of || p.step !== b.index) {
      return {
        illegal: `the signed order at seq ${String(p.orderSeq)} compensates step ${p.step} (${p.of}), not step ${b.index} (${of})`,
      };
    }
    if (b.tool !== p.tool || !sameBytes(canonicalBytes(b.args), canonicalBytes(p.args))) {
      return { illegal: `compensation ran ${b.tool} with arguments other than the signed order's` };
    }
    target = p;
  } else {
    if (!s.recovery.rollback)
      return {
        illegal: `compensation of step ${b.index} without a signed rollback or compensate order`,
      };
    const j = compensationTarget(s, b.index, of);
    if (typeof j === "string") return { illegal: j };
    target = { effect: j, step: b.index, of, tool: b.tool, args: b.args, orderSeq: null };
  }
  if (
    s.effects.some((e) => e.effectId === b.effectId) ||
    s.effects.some((e) => e.compensations.some((c) => c.effectId === b.effectId))
  ) {
    return { illegal: `effect ${b.effectId} was already applied` };
  }
  return {
    event: "compensation_execute",
    step: target.step,
    apply: (st) => {
      const e: EffectRecord | undefined = st.effects[target.effect];
      if (!e) return;
      e.compensations.push({
        orderSeq: target.orderSeq,
        tool: b.tool,
        args: b.args,
        effectId: b.effectId,
        executedSeq: ev.seq,
        outcome: b.outcome,
        verifiedSeq: null,
        verdict: null,
      });
      st.recovery.pending = target;
      st.recovery.cursor = target.effect;
      st.counts.compensations++;
    },
  };
}

function compensationVerified(
  s: RunState,
  m: MessageOf<"step_verified">,
  ev: TraceEvent,
): Classified {
  const b = m.body;
  const event: RunEvent = b.verdict === "passed" ? "compensation_pass" : "compensation_fail";
  if (nextPhase(s.phase, event) === null) return { event, step: b.index, apply: () => {} };
  const p = s.recovery.pending;
  if (p === null || p.of !== b.compensationOf || p.step !== b.index || m.step !== b.index) {
    return {
      illegal: `verification of a compensation of step ${b.index} (${String(b.compensationOf)}) that is not the one executed`,
    };
  }
  return {
    event,
    step: p.step,
    apply: (st) => {
      const e = st.effects[p.effect];
      const c = e?.compensations[e.compensations.length - 1];
      if (!e || !c) return;
      c.verifiedSeq = ev.seq;
      c.verdict = b.verdict;
      if (b.verdict === "passed") {
        e.compensated = true;
        const x = st.steps[e.step];
        if (x)
          x.compensated = st.effects.filter((f) => f.step === e.step).every((f) => f.compensated);
      }
      st.recovery.pending = null;
    },
  };
}

function closed(s: RunState, m: MessageOf<"run_closed">, ev: TraceEvent): Classified {
  const b = m.body;
  const event = closeEvent(b.outcome, s.phase);
  if (nextPhase(s.phase, event) === null) return { event, step: null, apply: () => {} };
  if ((b.outcome === "cancelled" || b.outcome === "resolved") && s.ended?.outcome !== b.outcome)
    return {
      illegal: `run closed as ${b.outcome}, but no person's signed order ended it so (${s.ended ? `the last one says ${s.ended.outcome}` : "there is none"})`,
    };
  if (event === "close_completed") {
    const step = s.current === null ? undefined : s.steps[s.current];
    if (!step || step.index !== step.total - 1) {
      return {
        illegal: `run closed as completed after step ${String(step?.index)} of a ${String(step?.total)}-step plan`,
      };
    }
  }
  return {
    event,
    step: null,
    apply: (st) => {
      st.closed = {
        seq: ev.seq,
        outcome: b.outcome,
        reason: b.reason,
        steps: b.steps,
        receipt: b.receipt,
      };
      st.outcome = b.outcome;
    },
  };
}

function closeEvent(outcome: RunOutcome, phase: Phase): RunEvent {
  switch (outcome) {
    case "completed":
      return "close_completed";
    case "rolled_back":
      return "close_rolled_back";
    case "quarantined":
      return "close_quarantined";
    case "cancelled":
    case "resolved":
      // A person's end seals what their order set in motion: the halt or the rollback.
      if (phase === "quarantined") return "close_quarantined";
      if (phase === "rolling_back") return "close_rolled_back";
      return "close_failed";
    default:
      return "close_failed";
  }
}

/**
 * The recovery orders only a person may give, in one place (docs/console.md, "Runs that
 * always end"): any order but a quarantine while the run is escalated; an order that ends
 * the run as cancelled or resolved (only as a quarantine or a rollback); and a rollback of
 * a step still under review (a cancel while it waits: the executor then runs no further
 * step of the run). Returns what is refused, or null.
 */
export function personOnly(
  phase: Phase,
  event: RunEvent,
  role: Role,
  ends: PersonEnd | undefined,
): string | null {
  if (ends !== undefined && event !== "quarantine" && event !== "rollback")
    return `a ${event} cannot end a run as ${ends}: only a quarantine or a rollback can`;
  if (role === "human") return null;
  if (ends !== undefined) return `only a person may end a run as ${ends}`;
  if (phase === "escalated" && event !== "quarantine")
    return "the run is escalated: only a human decides";
  if (phase === "routed" && event === "rollback")
    return "only a person may roll back a run while its step waits for review";
  return null;
}

/** The stream seq at which the current attempt of `step` was proposed (0 when unknown). */
export function proposedAt(s: Pick<RunState, "transitions">, step: number): number {
  for (let i = s.transitions.length - 1; i >= 0; i--) {
    const t = s.transitions[i];
    if (t && t.step === step && t.to === "proposed") return t.seq;
  }
  return 0;
}

/** The executor refused the current attempt of `step` as routed under another policy. */
function refusedUnderAnotherPolicy(s: RunState, step: number): boolean {
  const since = proposedAt(s, step);
  return s.rejections.some(
    (r) =>
      r.by === "executor" &&
      r.code === "policy_digest_mismatch" &&
      (r.rejectedSeq ?? r.seq) > since,
  );
}

/**
 * A person who orders a retry of a step decides that its action may run again unchanged:
 * the escalation that brought them in had put it on the avoid list (recovery.ts), which
 * would otherwise refuse the very proposal the retry asks for.
 */
function liftAvoid(st: RunState, step: number, digest: string): void {
  const action = st.steps[step]?.digests.find((d) => d.digest === digest)?.action;
  st.recovery.avoid = st.recovery.avoid.filter((d) => d !== digest);
  if (action !== undefined)
    st.recovery.avoidActions = st.recovery.avoidActions.filter((k) => k !== `${step}|${action}`);
}

// ---------------------------------------------------------------------------------------

export interface QuorumStatus {
  met: boolean;
  /** Distinct approving keys whose strategy counts toward the requirement. */
  have: number;
  need: number;
  humanRequired: boolean;
  humanApproved: boolean;
}

/** Whether a step's approvals meet its tier's requirement; vetoes are handled by the table. */
export function quorum(st: StepState): QuorumStatus {
  const req = st.requires;
  if (req === null || st.denied !== null) {
    return {
      met: false,
      have: 0,
      need: req?.reviewers ?? 0,
      humanRequired: req?.human ?? false,
      humanApproved: false,
    };
  }
  // Same counting as the executor's gate: only strategies the tier names count.
  const counted = new Set(
    st.approvals.filter((a) => req.strategies.includes(a.strategy)).map((a) => a.kid),
  );
  const humanApproved = st.approvals.some((a) => a.role === "human" && a.strategy === "human");
  return {
    met: counted.size >= req.reviewers && (!req.human || humanApproved),
    have: counted.size,
    need: req.reviewers,
    humanRequired: req.human,
    humanApproved,
  };
}

function tableReason(s: RunState, ev: TraceEvent, event: RunEvent): string {
  const m = ev.message;
  const base = `${m.kind} (${event}) is not legal in phase ${s.phase}`;
  const st = s.current === null ? undefined : s.steps[s.current];
  if (s.phase === "new") return `${base}: the run has no task_submitted yet`;
  if (s.phase === "quarantined")
    return `${base}: the run is quarantined; only a run_closed with outcome quarantined (or the cancelled or resolved a person ordered) may seal it`;
  if (event === "execute" && st && (s.phase === "proposed" || s.phase === "routed")) {
    const q = quorum(st);
    return `${base}: step ${st.index} was never approved (${q.have} of ${q.need} approvals${q.humanRequired && !q.humanApproved ? ", no human approval" : ""})`;
  }
  if (event === "execute" && st && (s.phase === "vetoed" || s.phase === "denied")) {
    return `${base}: step ${st.index} was ${s.phase === "denied" ? `denied (${String(st.denied)})` : "vetoed"}`;
  }
  if (event === "execute" || event === "verify_pass" || event === "verify_fail") {
    if (s.phase === "executed" && event === "execute")
      return `${base}: step ${String(st?.index)} was already executed: duplicate`;
    if (s.phase === "passed" || s.phase === "failed")
      return `${base}: step ${String(st?.index)} was already verified`;
  }
  if (event === "propose_next" && st) {
    return `${base}: step ${st.index} is not verified passed, so a proposal for step ${st.index + 1} would skip it`;
  }
  if (event === "propose_again" && st) {
    return `${base}: a new attempt of step ${st.index} needs a retry, a replan, a veto or a denial first`;
  }
  if (event === "close_completed" && st) return `${base}: the last step is not verified passed`;
  if (event.startsWith("close_")) return `${base}: an effect may still be in flight or unverified`;
  return base;
}

function maxTierOf(a: Tier, b: Tier): Tier {
  return tierRank(a) >= tierRank(b) ? a : b;
}

/** Identity of an action regardless of where and when it runs: avoid lists match on this. */
function actionKey(tool: string, args: unknown): string {
  return sha256Hex(canonicalBytes({ tool, args }));
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
