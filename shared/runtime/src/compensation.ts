import {
  sameArguments,
  type Compensation,
  type ErrorCode,
  type JsonObject,
  type MessageOf,
} from "@trias/protocol";

/** What the tool pack says undoes an effect (`ToolDef.compensate`), or null: it cannot be undone. */
export interface DeclaredUndo {
  tool: string;
  args: JsonObject;
}

export type OrderCheck = { ok: true } | { ok: false; code: ErrorCode; reason: string };

/**
 * Pure, and the one rule for a compensation order, applied by the executor before it runs
 * one and by the verifier when it audits one: the order names one compensation, of an effect
 * that happened (an ok, non-compensating execution of that run, step and digest), and it is
 * exactly the undo the tool pack declares for that effect (same tool, the same arguments by
 * sameArguments: equal, or the order names the declared arguments by reference). `declared` is computed by the caller from `original` with the tool pack, so no
 * signer of the order can choose what runs (docs/security.md).
 */
export function checkCompensationOrder(
  order: { run: string; compensation: Compensation | null },
  original: MessageOf<"step_executed"> | null,
  declared: DeclaredUndo | null,
): OrderCheck {
  const c = order.compensation;
  if (!c)
    return {
      ok: false,
      code: "scope_denied",
      reason: "a compensate order must name the compensation",
    };
  if (!original) {
    return {
      ok: false,
      code: "scope_denied",
      reason: "a compensate order must carry the executed effect it undoes",
    };
  }
  const o = original;
  if (
    o.run !== order.run ||
    o.body.digest !== c.of ||
    o.step !== c.step ||
    o.body.outcome !== "ok" ||
    o.body.compensationOf !== null
  ) {
    return {
      ok: false,
      code: "scope_denied",
      reason: `the order's evidence is not the executed effect of step ${c.step} (${c.of.slice(0, 12)})`,
    };
  }
  if (!declared) {
    return {
      ok: false,
      code: "scope_denied",
      reason: `${o.body.tool} declares no compensation: its effect cannot be undone by an order`,
    };
  }
  if (declared.tool !== c.tool || !sameArguments(declared.args, c.args)) {
    return {
      ok: false,
      code: "scope_denied",
      reason: `${c.tool} with these arguments is not the compensation ${o.body.tool} declares for this effect`,
    };
  }
  return { ok: true };
}
