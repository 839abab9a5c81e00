import type { Bus } from "@trias/bus";
import {
  GateError,
  ValidationError,
  subjectFor,
  type MessageOf,
  type ReviewRequirement,
} from "@trias/protocol";
import type { KeyRegistry, Signer } from "@trias/signing";
import { AgentHost, separationOfDuties, silentLogger } from "@trias/runtime";

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
}

function waiting(registry: KeyRegistry, stored: { data: Uint8Array }[]): Map<string, WaitingStep> {
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
    if (
      m.kind === "tier_assigned" &&
      m.step !== null &&
      m.body.requires.human &&
      m.body.denied === null
    ) {
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

/** Steps that wait for a human decision (across runs, or in one run). */
export async function pendingHuman(
  bus: Bus,
  registry: KeyRegistry,
  run?: string,
): Promise<WaitingStep[]> {
  const filter = run ? `trias.*.*.${run}` : "trias.>";
  return [...waiting(registry, await bus.readAll(filter)).values()];
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
  if (human.role !== "human")
    throw new ValidationError(
      "role_mismatch",
      `key ${human.name} is a ${human.role} key; a human decision needs a human key`,
    );
  const steps = [...waiting(registry, await bus.readAll(`trias.*.*.${run}`)).values()].filter(
    (w) => w.step === step,
  );
  const w = steps.at(-1);
  if (!w) {
    throw new ValidationError(
      "schema_invalid",
      `step ${step} of run ${run} is not waiting for a human (already decided, not routed yet, not a human tier, or the run is closed); see: trias pending ${run}`,
    );
  }
  // The executor refuses it too (checkVerdictBinding); saying so here saves a signed refusal.
  const conflict = separationOfDuties(
    { kid: human.kid, name: human.name },
    { proposer: w.proposer, router: w.router, requestedBy: w.requestedBy ?? undefined },
  );
  if (conflict !== null && decision === "approve") throw new GateError("self_approval", conflict);
  if (w.approvedBy.includes(human.name))
    throw new GateError(
      "duplicate_reviewer",
      `${human.name} approved step ${w.step} of run ${run} already; one key counts once`,
    );
  const host = new AgentHost({ name: human.name, bus, signer: human, registry, log: silentLogger });
  await host.emit("verdict", {
    run,
    step: w.step,
    attempt: w.attempt,
    body: { digest: w.digest, assignment: w.frame, decision, strategy: "human", reasons: [reason] },
  });
  return w;
}

export const HUMAN_SUBJECT = (run: string) => subjectFor("human", "verdict", run);
