import type { PersonEnd, RecoveryDecided } from "@trias/protocol";
import { nextPhase, type RunState } from "@trias/runstate";

/**
 * What a person can do to a run that will not end by itself:
 * - cancel: any open run; it closes as `cancelled`. Where something ran and the run's
 *   table allows a rollback (a step waiting for review, or after a failure), a rollback
 *   compensates what ran first; otherwise a halt (a quarantine the executor enforces);
 * - retry, rollback: an escalated run's current step again, or undo what ran;
 * - abandon (closes as `cancelled`), resolved (closes as `resolved`: fixed by hand outside
 *   Trias): an escalated run.
 */
export const HUMAN_ACTIONS = ["cancel", "retry", "rollback", "abandon", "resolved"] as const;
export type HumanAction = (typeof HUMAN_ACTIONS)[number];

export type HumanOrder =
  { step: number | null; attempt: number; body: RecoveryDecided } | { refused: string };

/**
 * The signed recovery order a person's action becomes, from the run's replayed state, or
 * why it is refused. One pure function: the CLI and the console ask it, the agents then
 * apply the order through the run's transition table like any other.
 */
export function humanOrder(
  st: RunState,
  action: HumanAction,
  by: string,
  reason: string,
): HumanOrder {
  if (st.status === "new") return { refused: `no such run: ${st.run}` };
  if (st.status !== "open")
    return { refused: `run ${st.run} is ${st.outcome ?? st.status} already; nothing to ${action}` };
  const step = st.current === null ? undefined : st.steps[st.current];
  const digest = step?.digest ?? null;
  const base = {
    compensation: null,
    avoid: [],
    notBefore: null,
    evidence: null,
  } satisfies Partial<RecoveryDecided>;
  const at = { step: st.current, attempt: step?.attempt ?? 0 };
  const ran = st.effects.filter((e) => !e.compensated);
  const order = (
    a: RecoveryDecided["action"],
    text: string,
    o: { nextAttempt?: number; ends?: PersonEnd } = {},
  ): HumanOrder =>
    digest === null
      ? { refused: `run ${st.run} has no routed step to ${action} yet` }
      : {
          ...at,
          body: {
            ...base,
            digest,
            action: a,
            reason: text,
            nextAttempt: o.nextAttempt ?? at.attempt,
            ...(o.ends ? { ends: o.ends } : {}),
          },
        };
  if (action === "cancel") {
    const text = `cancelled by ${by}: ${reason}`;
    if (ran.length > 0 && nextPhase(st.phase, "rollback") !== null)
      return order("rollback", text, { ends: "cancelled" });
    // Something may be in flight (approved, executing, verifying): a halt, with what is left.
    const left = ran.length
      ? `; halted while ${st.phase}, so what ran is not compensated: ${ran.map((e) => `${e.tool} (step ${e.step})`).join(", ")}`
      : "";
    // Quarantine is legal in every phase of an open run and stops every further step.
    return {
      ...at,
      body: {
        ...base,
        digest: digest ?? "0".repeat(64),
        action: "quarantine",
        reason: `${text}${left}`,
        nextAttempt: at.attempt,
        ends: "cancelled",
      },
    };
  }
  if (st.phase !== "escalated")
    return {
      refused: `run ${st.run} is not escalated (phase ${st.phase}): ${action} decides an escalated run; stop this one with: trias cancel ${st.run} --reason <text>`,
    };
  switch (action) {
    case "retry":
      return order("retry", `retry ordered by ${by}: ${reason}`, {
        nextAttempt: at.attempt + 1,
      });
    case "rollback":
      return order("rollback", `rollback ordered by ${by}: ${reason}`);
    case "abandon":
      return order("quarantine", `abandoned by ${by}: ${reason}`, { ends: "cancelled" });
    case "resolved":
      return order("quarantine", `resolved by hand by ${by}: ${reason}`, { ends: "resolved" });
  }
}
