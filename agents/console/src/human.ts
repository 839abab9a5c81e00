import { PENDING_BUCKET, isNotFound, type Bus } from "@trias/bus";
import { randomBytes } from "node:crypto";
import {
  GateError,
  PROTOCOL_VERSION,
  ValidationError,
  asksForHuman,
  isArgsRef,
  subjectFor,
  type ArgsRef,
  type JsonObject,
  type Kind,
  type MessageOf,
  type ReviewRequirement,
  type TraceContext,
} from "@trias/protocol";
import type { KeyRegistry, Signer } from "@trias/signing";
import { busPayloads, separationOfDuties } from "@trias/runtime";
import {
  SpanKind,
  extractTrace,
  injectTrace,
  natsAttributes,
  triasAttributes,
  withSpan,
} from "@trias/telemetry";
import { CliError, EXIT, requireRun } from "./cli-kit.js";
import { readRun, replayLines } from "./audit.js";
import { humanOrder, type HumanAction } from "./resolve.js";

export interface WaitingStep {
  run: string;
  step: number;
  attempt: number;
  tier: string;
  tool: string;
  args: unknown;
  digest: string;
  frame: Uint8Array;
  /** What the policy asks for, and why (the router's explanation: score terms, rules). */
  requires: ReviewRequirement;
  explanation: string[];
  environment: string;
  /** Who asked for the run: that identity may not approve it. */
  requestedBy: string | null;
  proposer: { kid: string; name: string };
  router: { kid: string; name: string };
  /** When the step was routed (ms since epoch); the policy's human timeout runs from here. */
  routedAt: number;
  /** Humans who approved already (a group requirement may need more). */
  approvedBy: string[];
  /** The run's trace context: a human's decision continues the run's one OTel trace. */
  trace: TraceContext | null;
}

/** Steps waiting for a human among these stored messages (one run's, or several runs'). */
export function waiting(
  registry: KeyRegistry,
  stored: readonly { data: Uint8Array }[],
): Map<string, WaitingStep> {
  const out = new Map<string, WaitingStep>();
  const decided = new Set<string>();
  const closed = new Set<string>();
  const approved = new Map<string, string[]>();
  for (const s of stored) {
    let m;
    try {
      m = registry.open(s.data).message;
    } catch {
      continue;
    }
    if (m.kind === "tier_assigned" && m.step !== null && asksForHuman(m.body)) {
      const opened = registry.open(s.data);
      const po = registry.open(m.body.proposal);
      const p = po.message as MessageOf<"step_proposed">;
      out.set(m.body.digest, {
        run: m.run,
        step: m.step,
        attempt: m.attempt,
        tier: m.body.tier,
        tool: p.body.tool,
        args: p.body.args,
        digest: m.body.digest,
        frame: s.data,
        requires: m.body.requires,
        explanation: m.body.explanation,
        environment: m.body.environment,
        requestedBy: p.body.requestedBy ?? null,
        proposer: { kid: po.key.kid, name: po.key.name },
        router: { kid: opened.key.kid, name: opened.key.name },
        routedAt: m.issuedAt,
        approvedBy: [],
        trace: m.trace,
      });
    }
    if (m.kind === "verdict" && m.role === "human") {
      // A group requirement may need several humans: only a refusal decides the step here.
      if (m.body.decision !== "approve") decided.add(m.body.digest);
      else {
        const who = registry.get(m.sender)?.name ?? m.sender;
        const list = approved.get(m.body.digest) ?? [];
        if (!list.includes(who)) list.push(who);
        approved.set(m.body.digest, list);
      }
    }
    if (m.kind === "step_executed") decided.add(m.body.digest);
    if (m.kind === "run_closed") closed.add(m.run);
  }
  for (const [d, w] of out) {
    if (decided.has(d) || closed.has(w.run)) out.delete(d);
    else w.approvedBy = approved.get(d) ?? [];
  }
  return out;
}

/**
 * Runs whose traces are read at once when listing pending steps from the index.
 * @default 16
 */
const PENDING_READS_AT_ONCE = 16;

/**
 * Steps that wait for a human decision (across runs, or in one run). Across runs, the runs
 * come from the pending index (PENDING_BUCKET, kept by the verifier) and each is read from
 * its start, so the cost follows the runs waiting, not the trace; each run's trace decides
 * what waits (a key is a hint). Without the bucket the whole trace is read, and `onFallback`
 * says so.
 */
export async function pendingHuman(
  bus: Bus,
  registry: KeyRegistry,
  run?: string,
  onFallback: (why: string) => void = () => undefined,
): Promise<WaitingStep[]> {
  if (run) return [...waiting(registry, await readRun(bus, run, onFallback)).values()];
  const runs = await pendingRuns(bus);
  if (runs === null) {
    onFallback(`no ${PENDING_BUCKET} bucket (trias setup creates it): read the whole trace`);
    return [...waiting(registry, await bus.readAll("trias.>")).values()];
  }
  const out: WaitingStep[] = [];
  for (let i = 0; i < runs.length; i += PENDING_READS_AT_ONCE) {
    const reads = await Promise.all(
      runs.slice(i, i + PENDING_READS_AT_ONCE).map((r) => readRun(bus, r, onFallback)),
    );
    for (const events of reads) out.push(...waiting(registry, events).values());
  }
  return out;
}

/** The runs the pending index names, oldest key first; null without the bucket. */
async function pendingRuns(bus: Bus): Promise<string[] | null> {
  let kv;
  try {
    kv = await bus.kv(PENDING_BUCKET);
    // Opening a bucket does not look for it.
    await kv.status();
  } catch (e) {
    if (isNotFound(e)) return null;
    throw e;
  }
  const runs: string[] = [];
  for await (const k of await kv.keys()) runs.push(k);
  return runs;
}

/** The step of a run a human is asked to decide; "not waiting" explains why not. */
export async function waitingStep(
  bus: Bus,
  registry: KeyRegistry,
  run: string,
  step: number,
): Promise<WaitingStep> {
  const w = [...waiting(registry, await readRun(bus, run)).values()]
    .filter((x) => x.step === step)
    .at(-1);
  if (!w) {
    // "The answer is no" (exit 1, docs/cli.md): the call was well formed, the step is not waiting.
    throw new CliError(
      EXIT.failed,
      `step ${step} of run ${run} is not waiting for a human (already decided, not routed yet, not a human tier, or the run is closed); see: trias pending ${run}`,
    );
  }
  return w;
}

/**
 * Whether this human may decide this step now: a human key, not the requester, proposer or
 * router (separationOfDuties, the executor's own rule), not a second approval by one key.
 */
export function checkHumanDecision(
  w: WaitingStep,
  judge: { kid: string; name: string; role: string },
  decision: "approve" | "reject",
): void {
  if (judge.role !== "human")
    throw new ValidationError(
      "role_mismatch",
      `key ${judge.name} is a ${judge.role} key; a human decision needs a human key`,
    );
  // The executor refuses it too (checkVerdictBinding); saying so here saves a signed refusal.
  const conflict = separationOfDuties(judge, {
    proposer: w.proposer,
    router: w.router,
    requestedBy: w.requestedBy ?? undefined,
  });
  if (conflict !== null && decision === "approve") throw new GateError("self_approval", conflict);
  if (w.approvedBy.includes(judge.name))
    throw new GateError(
      "duplicate_reviewer",
      `${judge.name} approved step ${w.step} of run ${w.run} already; one key counts once`,
    );
}

/**
 * How long a human verdict stays valid after it is made: a person signing in a browser may
 * take a while between "prepare" and "sign".
 * @default 600000 (ten minutes)
 */
export const HUMAN_VERDICT_TTL_MS = 10 * 60_000;

/** The unsigned verdict envelope for one human decision; whoever holds the key signs its encoding. */
export function humanVerdictEnvelope(
  w: WaitingStep,
  judge: { kid: string; name: string },
  decision: "approve" | "reject",
  reason: string,
  now = Date.now(),
): MessageOf<"verdict"> {
  return {
    v: PROTOCOL_VERSION,
    id: `human-${w.run}-${w.step}-${w.attempt}-${randomBytes(6).toString("hex")}`,
    kind: "verdict",
    run: w.run,
    step: w.step,
    attempt: w.attempt,
    sender: judge.kid,
    role: "human",
    issuedAt: now,
    expiresAt: now + HUMAN_VERDICT_TTL_MS,
    trace: personTrace("verdict", w, w.trace, judge.name),
    body: {
      digest: w.digest,
      assignment: w.frame,
      decision,
      strategy: "human",
      reasons: [reason],
    },
  };
}

/**
 * A person's message continues the run's one OTel trace (docs/operations.md, "Tracing"):
 * a PRODUCER span `send <kind>` of this process, child of the context of the message it
 * answers, whose context the envelope then carries, so the agents that handle the message
 * are its children. Without tracing, or for a run without a trace, `parent` goes on as is.
 */
export function personTrace(
  kind: Kind,
  at: { run: string; step: number | null; attempt: number },
  parent: TraceContext | null,
  person: string,
): TraceContext | null {
  if (parent === null) return null;
  const subject = subjectFor("human", kind, at.run);
  return withSpan(
    `send ${kind}`,
    () => ({
      kind: SpanKind.PRODUCER,
      parent: extractTrace({
        traceparent: parent.traceparent,
        ...(parent.tracestate ? { tracestate: parent.tracestate } : {}),
      }),
      attributes: {
        ...natsAttributes({ operation: "send", subject, template: `trias.human.${kind}.{run}` }),
        ...triasAttributes({
          run: at.run,
          ...(at.step !== null ? { step: at.step } : {}),
          attempt: at.attempt,
          agent: person,
          role: "human",
          kind,
        }),
      },
    }),
    () => {
      const h = injectTrace({});
      const traceparent = h["traceparent"];
      if (!traceparent) return parent;
      return { traceparent, ...(h["tracestate"] ? { tracestate: h["tracestate"] } : {}) };
    },
  );
}

/** Publish a signed human verdict frame where the executor reads it, with the run's trace context. */
export async function publishHumanVerdict(
  bus: Bus,
  message: MessageOf<"verdict">,
  frame: Uint8Array,
): Promise<number> {
  const headers: Record<string, string> = {};
  if (message.trace) headers["traceparent"] = message.trace.traceparent;
  const r = await bus.publish(HUMAN_SUBJECT(message.run), frame, { msgId: message.id, headers });
  return r.seq;
}

/**
 * Sign and publish a human's verdict on one waiting step, with the human's own key. The
 * verdict binds to the step's digest and carries the router's assignment as evidence.
 */
export async function decideAsHuman(
  bus: Bus,
  registry: KeyRegistry,
  human: Signer,
  run: string,
  step: number,
  decision: "approve" | "reject",
  reason: string,
): Promise<WaitingStep> {
  const w = await waitingStep(bus, registry, run, step);
  checkHumanDecision(w, human, decision);
  const message = humanVerdictEnvelope(w, human, decision, reason);
  await publishHumanVerdict(bus, message, human.seal(message));
  return w;
}

export const HUMAN_SUBJECT = (run: string) => subjectFor("human", "verdict", run);

/**
 * A step's arguments as its latest proposal names them, read back and checked against their
 * digest when they travel by reference (docs/security.md): what a person approves. Null when
 * the run has no proposal for that step; `payload_unavailable` when the bytes are missing or
 * changed.
 */
export async function stepArguments(
  bus: Bus,
  registry: KeyRegistry,
  run: string,
  step: number,
): Promise<{ args: JsonObject; ref: ArgsRef | null } | null> {
  const filter = subjectFor("proposer", "step_proposed", run);
  const last = (await bus.readRun(run, { filter })).messages
    .map((s) => registry.open(s.data).message)
    .filter((m): m is MessageOf<"step_proposed"> => m.kind === "step_proposed" && m.step === step)
    .at(-1);
  if (!last) return null;
  const args = await busPayloads(bus).resolve(last.body.args);
  return { args, ref: isArgsRef(last.body.args) ? last.body.args : null };
}

/**
 * A person's order about a run (cancel, or a decision on an escalated one), unsigned: the
 * run's state replayed from its trace, `humanOrder`'s verdict on it, and the envelope that
 * continues the run's trace. The CLI signs it with the person's key file, the console has
 * the person's browser sign its encoding. Refused (exit 1) when the run's state forbids it.
 */
export async function prepareHumanOrder(
  bus: Bus,
  registry: KeyRegistry,
  person: { kid: string; name: string },
  run: string,
  action: HumanAction,
  reason: string,
  now = Date.now(),
): Promise<MessageOf<"recovery_decided">> {
  const { events, r } = await orderOn(bus, registry, person, run, action, reason);
  // The order continues the run's one trace: the context of the run's last traced message.
  let last: TraceContext | null = null;
  for (const e of events) {
    try {
      last = registry.open(e.data).message.trace ?? last;
    } catch {
      // a frame that does not verify carries no context worth following
    }
  }
  return {
    v: PROTOCOL_VERSION,
    id: `human-${action}-${run}-${now.toString(36)}-${randomBytes(4).toString("hex")}`,
    kind: "recovery_decided",
    run,
    step: r.step,
    attempt: r.attempt,
    sender: person.kid,
    role: "human",
    issuedAt: now,
    expiresAt: now + HUMAN_VERDICT_TTL_MS,
    trace: personTrace(
      "recovery_decided",
      { run, step: r.step, attempt: r.attempt },
      last,
      person.name,
    ),
    body: r.body,
  };
}

/** The order `humanOrder` gives for the run as its trace stands now, or the refusal (exit 1). */
async function orderOn(
  bus: Bus,
  registry: KeyRegistry,
  person: { name: string },
  run: string,
  action: HumanAction,
  reason: string,
) {
  const events = await readRun(bus, run);
  requireRun(bus, run, events);
  const { state } = replayLines(registry, run, events);
  const r = humanOrder(state, action, person.name, reason);
  if ("refused" in r) throw new CliError(EXIT.failed, r.refused);
  return { events, r };
}

/** Whether a prepared order is still one the person may give (the run may have moved since). */
export async function recheckHumanOrder(
  bus: Bus,
  registry: KeyRegistry,
  person: { name: string },
  run: string,
  action: HumanAction,
  reason: string,
): Promise<void> {
  await orderOn(bus, registry, person, run, action, reason);
}

/** Publish a person's signed order where the agents read it, with its trace context. */
export async function publishHumanOrder(
  bus: Bus,
  message: MessageOf<"recovery_decided">,
  frame: Uint8Array,
): Promise<number> {
  const headers: Record<string, string> = {};
  if (message.trace) headers["traceparent"] = message.trace.traceparent;
  const r = await bus.publish(subjectFor("human", "recovery_decided", message.run), frame, {
    msgId: message.id,
    headers,
  });
  return r.seq;
}
