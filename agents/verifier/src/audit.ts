import { GateError, type Check, type MessageOf } from "@trias/protocol";
import type { KeyRegistry } from "@trias/signing";
import { countQuorum, openAssignment, openVerdict } from "@trias/runtime";

/**
 * Re-check, independently of the executor, that an execution was authorised: the signed
 * assignment and proposal it carries, the same digest, the same tool and arguments, and a
 * quorum of distinct approvals bound to that digest. Pure given the registry.
 */
export function auditExecution(registry: KeyRegistry, m: MessageOf<"step_executed">): Check[] {
  const checks: Check[] = [];
  const b = m.body;
  try {
    const a = openAssignment(registry, b.evidence.assignment);
    const p = a.proposal.message.body;
    const same =
      a.message.body.digest === b.digest &&
      p.tool === b.tool &&
      JSON.stringify(p.args) === JSON.stringify(b.args);
    checks.push({
      name: "execution matches the approved proposal",
      ok: same,
      detail: same
        ? `digest ${b.digest.slice(0, 12)}`
        : "tool, arguments or digest differ from the signed proposal",
    });
    const sameStep =
      a.message.run === m.run && a.message.step === m.step && a.message.attempt === m.attempt;
    checks.push({
      name: "execution is for the assigned step",
      ok: sameStep,
      detail: `${a.message.run}/${a.message.step}/${a.message.attempt}`,
    });
    checks.push({
      name: "step was not denied",
      ok: a.message.body.denied === null,
      detail: a.message.body.denied ?? "not denied",
    });
    const verdicts = b.evidence.approvals.map((bytes) => openVerdict(registry, bytes).verdict);
    for (const v of verdicts) {
      if (v.message.body.digest !== b.digest)
        throw new GateError("digest_mismatch", `approval by ${v.key.name} is for another digest`);
    }
    const q = countQuorum(a.message.body.requires, verdicts);
    checks.push({ name: "quorum of distinct approvals", ok: q.met, detail: q.reason });
  } catch (e) {
    checks.push({
      name: "authorisation evidence verifies",
      ok: false,
      detail: (e as Error).message,
    });
  }
  return checks;
}
