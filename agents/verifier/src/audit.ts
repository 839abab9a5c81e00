import {
  GateError,
  canonicalEqual,
  frameRef,
  type Check,
  type JsonObject,
  type MessageOf,
} from "@trias/protocol";
import { checkAssignment, type LoadedPolicy, type RunView } from "@trias/policy";
import type { KeyRegistry } from "@trias/signing";
import {
  checkCompensationOrder,
  countQuorum,
  openAssignment,
  openVerdict,
  type DeclaredUndo,
} from "@trias/runtime";

/** Checks about authorisation rather than outcome: failing one means quarantine, not retry. */
export const AUTHORISATION_CHECKS: ReadonlySet<string> = new Set([
  "execution matches the approved proposal",
  "execution is for the assigned step",
  "step was not denied",
  "tier is at least the policy's",
  "quorum of distinct approvals",
  "authorisation evidence verifies",
  "compensation matches its signed order",
  "compensation is the declared undo",
  "compensation authorisation verifies",
]);

/**
 * The frames of a run's trace by their reference (frameRef): how an audit reads the signed
 * frames an execution names as its evidence. Undefined: the trace does not hold it.
 */
export type FrameLookup = (ref: string) => Uint8Array | undefined;

/**
 * The frame `ref` names, checked against its digest (whatever the lookup is backed by).
 * Throws when the run's trace does not hold it: evidence that cannot be read verifies nothing.
 */
function evidenceFrame(frames: FrameLookup, ref: string, what: string): Uint8Array {
  const bytes = frames(ref);
  if (bytes === undefined || frameRef(bytes) !== ref)
    throw new GateError(
      "digest_mismatch",
      `the execution names ${what} ${ref.slice(0, 12)}, which the run's trace does not hold`,
    );
  return bytes;
}

/**
 * Re-check, independently of the executor, that an execution was authorised: the signed
 * assignment and proposal it names, the same digest, the same tool and arguments, a tier
 * and requirement no weaker than the verifier's own derivation from its policy and the run
 * it has followed (`view`), and a quorum of distinct approvals bound to that digest, counted
 * against the stricter of the two. Pure given the registry and the policy. `args` are the
 * execution's arguments as the policy judges them: its own, or the bytes its reference names
 * read back and checked (a string: why they could not be, so the tier cannot be re-derived).
 */
export function auditExecution(
  registry: KeyRegistry,
  m: MessageOf<"step_executed">,
  policy: LoadedPolicy,
  view: RunView,
  frames: FrameLookup,
  args: JsonObject | string = m.body.args,
): Check[] {
  const checks: Check[] = [];
  const b = m.body;
  try {
    if (typeof args === "string")
      throw new GateError("payload_unavailable", `the step's arguments cannot be read: ${args}`);
    const a = openAssignment(
      registry,
      evidenceFrame(frames, b.evidence.assignment, "a tier assignment"),
    );
    const p = a.proposal.message.body;
    const same =
      a.message.body.digest === b.digest && p.tool === b.tool && canonicalEqual(p.args, b.args);
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
    const verdicts = b.evidence.approvals.map(
      (ref) => openVerdict(registry, evidenceFrame(frames, ref, "an approval")).verdict,
    );
    for (const v of verdicts) {
      if (v.message.body.digest !== b.digest)
        throw new GateError("digest_mismatch", `approval by ${v.key.name} is for another digest`);
    }
    // The execution's arguments are the proposal's (checked above): judged resolved.
    const derived = checkAssignment(
      policy,
      {
        tool: p.tool,
        args: same ? args : p.args,
        run: m.run,
        step: m.step ?? 0,
        attempt: m.attempt,
      },
      view,
      a.message.body,
    );
    checks.push({
      name: "tier is at least the policy's",
      ok: derived.ok,
      detail: derived.ok
        ? `${a.message.body.tier} under ${policy.doc.environment} policy ${policy.digest.slice(0, 12)}`
        : `${derived.code}: ${derived.reason}`,
    });
    const q = countQuorum(derived.ok ? derived.requires : a.message.body.requires, verdicts);
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
 * executor-signed frame the order names: the rule the executor applies before running it
 * (checkCompensationOrder). `declaredFor` is the tool pack's `compensate` over the original
 * effect (its result resolved when it travelled by digest).
 */
export function auditCompensation(
  registry: KeyRegistry,
  m: MessageOf<"step_executed">,
  frames: FrameLookup,
  declaredFor: (original: MessageOf<"step_executed">) => DeclaredUndo | null,
): Check[] {
  const b = m.body;
  try {
    const order = registry.open(
      evidenceFrame(frames, b.evidence.assignment, "a compensate order"),
    ).message;
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
    if (!order.body.evidence)
      throw new GateError("scope_denied", "the compensate order names no original effect");
    const originalBytes = evidenceFrame(frames, order.body.evidence, "an effect to undo");
    const opened = registry.open(originalBytes).message;
    const original = opened.kind === "step_executed" ? opened : null;
    const check = checkCompensationOrder(
      { run: order.run, compensation: c },
      original,
      original ? declaredFor(original) : null,
    );
    return [
      {
        name: "compensation matches its signed order",
        ok: named,
        detail: named ? `order ${order.id}` : "tool, arguments or target differ from the order",
      },
      {
        name: "compensation is the declared undo",
        ok: check.ok,
        detail: check.ok ? `${original?.body.tool} is undone by ${b.tool}` : check.reason,
      },
    ];
  } catch (e) {
    return [
      { name: "compensation authorisation verifies", ok: false, detail: (e as Error).message },
    ];
  }
}
