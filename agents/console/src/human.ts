import type { Bus } from "@trias/bus";
import { ValidationError, subjectFor, type MessageOf } from "@trias/protocol";
import type { KeyRegistry, Signer } from "@trias/signing";
import { AgentHost, silentLogger } from "@trias/runtime";
import { CliError, EXIT } from "./cli-kit.js";

export interface WaitingStep {
  run: string;
  step: number;
  attempt: number;
  tier: string;
  tool: string;
  args: unknown;
  digest: string;
  frame: Uint8Array;
}

function waiting(registry: KeyRegistry, stored: { data: Uint8Array }[]): Map<string, WaitingStep> {
  const out = new Map<string, WaitingStep>();
  const decided = new Set<string>();
  const closed = new Set<string>();
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
      const p = registry.open(m.body.proposal).message as MessageOf<"step_proposed">;
      out.set(m.body.digest, {
        run: m.run,
        step: m.step,
        attempt: m.attempt,
        tier: m.body.tier,
        tool: p.body.tool,
        args: p.body.args,
        digest: m.body.digest,
        frame: s.data,
      });
    }
    if (m.kind === "verdict" && m.role === "human") decided.add(m.body.digest);
    if (m.kind === "step_executed") decided.add(m.body.digest);
    if (m.kind === "run_closed") closed.add(m.run);
  }
  for (const [d, w] of out) if (decided.has(d) || closed.has(w.run)) out.delete(d);
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
    // "The answer is no" (exit 1, docs/cli.md): the call was well formed, the step is not waiting.
    throw new CliError(
      EXIT.failed,
      `step ${step} of run ${run} is not waiting for a human (already decided, not routed yet, not a human tier, or the run is closed); see: trias pending ${run}`,
    );
  }
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
