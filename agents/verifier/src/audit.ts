import { GateError, canonicalBytes, type Check, type MessageOf } from "@trias/protocol";
import type { Catalogue } from "@trias/tools";
import type { KeyRegistry } from "@trias/signing";
import { countQuorum, openAssignment, openVerdict } from "@trias/runtime";

/** Checks about authorisation rather than outcome: failing one means quarantine, not retry. */
export const AUTHORISATION_CHECKS: ReadonlySet<string> = new Set([
  "execution matches the approved proposal",
  "execution is for the assigned step",
  "step was not denied",
  "quorum of distinct approvals",
  "authorisation evidence verifies",
  "compensation matches its signed order",
  "compensation is the declared undo",
  "compensation authorisation verifies",
]);

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

/**
 * A compensation is authorised by a signed compensate order (verifier or human) that names
 * it exactly, and it must be the undo the tool pack declares for the original effect, whose
 * executor-signed frame travels with it.
 */
export function auditCompensation(
  registry: KeyRegistry,
  m: MessageOf<"step_executed">,
  tools: Catalogue,
): Check[] {
  const b = m.body;
  try {
    const order = registry.open(b.evidence.assignment).message;
    if (
      order.kind !== "recovery_decided" ||
      order.body.action !== "compensate" ||
      order.body.compensation === null
    ) {
      throw new GateError(
        "scope_denied",
        "compensation is not backed by a signed compensate order",
      );
    }
    const c = order.body.compensation;
    const named =
      c.of === b.compensationOf &&
      c.tool === b.tool &&
      canonicalEqual(c.args, b.args) &&
      c.step === b.index;
    const originalBytes = b.evidence.approvals[0];
    if (!originalBytes)
      throw new GateError("scope_denied", "compensation carries no original effect");
    const original = registry.open(originalBytes).message;
    if (
      original.kind !== "step_executed" ||
      original.body.digest !== b.compensationOf ||
      original.body.outcome !== "ok"
    ) {
      throw new GateError(
        "scope_denied",
        "the effect being undone is not an executed step of this digest",
      );
    }
    const declared = tools
      .require(original.body.tool)
      .compensate(original.body.args, original.body.result);
    const matches =
      declared !== null && declared.tool === b.tool && canonicalEqual(declared.args, b.args);
    return [
      {
        name: "compensation matches its signed order",
        ok: named,
        detail: named ? `order ${order.id}` : "tool, arguments or target differ from the order",
      },
      {
        name: "compensation is the declared undo",
        ok: matches,
        detail: matches
          ? `${original.body.tool} is undone by ${b.tool}`
          : "not the undo the tool declares",
      },
    ];
  } catch (e) {
    return [
      { name: "compensation authorisation verifies", ok: false, detail: (e as Error).message },
    ];
  }
}

function canonicalEqual(a: unknown, b: unknown): boolean {
  return Buffer.from(canonicalBytes(a)).equals(Buffer.from(canonicalBytes(b)));
}
