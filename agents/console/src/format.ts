import { maskSealed, type JsonValue, type Message } from "@trias/protocol";
import type { RegisteredKey } from "@trias/signing";

const color = process.stdout.isTTY && !process.env["NO_COLOR"];
const c = (code: string) => (s: string) => (color ? `\u001b[${code}m${s}\u001b[0m` : s);
export const dim = c("2");
export const bold = c("1");
export const green = c("32");
export const red = c("31");
export const yellow = c("33");
export const cyan = c("36");

/** Subjects whose keys were destroyed, so their sealed values render as `[erased]` (docs/privacy.md). */
export type ErasedSubjects = ReadonlySet<string>;

function short(v: JsonValue, n = 80, erased: ErasedSubjects = new Set()): string {
  const s = JSON.stringify(maskSealed(v, erased)) ?? "";
  return s.length > n ? s.slice(0, n - 1) + "…" : s;
}

const tierColor = (t: string) => (t === "full" ? red(t) : t === "standard" ? yellow(t) : green(t));

/** One human-readable line per trace message, or null for messages not worth a line. */
export function describe(
  m: Message,
  key: RegisteredKey,
  erased: ErasedSubjects = new Set(),
): string | null {
  const step = m.step === null ? "" : `step ${m.step}${m.attempt > 0 ? `.${m.attempt}` : ""} `;
  const who = dim(`[${key.name}]`);
  switch (m.kind) {
    case "task_submitted":
      return `${bold(m.run)} submitted: ${m.body.goal} ${dim(`(${m.body.program} ${short(m.body.input, 60, erased)})`)}`;
    case "step_proposed":
      return `  ${step}proposed ${cyan(m.body.tool)} ${short(m.body.args, 70, erased)} ${dim(`(${m.body.index + 1}/${m.body.total})`)} ${who}`;
    case "tier_assigned": {
      const b = m.body;
      if (b.denied !== null)
        return `  ${step}${red("denied")} by policy ${b.environment}: ${b.denied} ${who}`;
      const needs = `${b.requires.reviewers} reviewer(s)${b.requires.human ? " + human" : ""}`;
      const why = b.explanation[0] ?? "";
      return `  ${step}tier ${tierColor(b.tier)} (risk ${b.score}; needs ${needs}) ${dim(why.replace(/^risk [0-9.]+ = /, ""))} ${who}`;
    }
    case "verdict": {
      const d = m.body.decision === "approve" ? green(m.body.decision) : red(m.body.decision);
      return `  ${step}verdict ${d} by ${bold(key.name)} (${m.body.strategy}): ${m.body.reasons.join("; ")}`;
    }
    case "step_executed": {
      const b = m.body;
      const what = b.compensationOf ? "compensated" : "executed";
      const res = b.outcome === "ok" ? green("ok") : red(`error: ${b.error ?? ""}`);
      return `  ${step}${what} ${cyan(b.tool)} ${res} ${dim(short(b.result, 70, erased))} ${dim(`approvals: ${b.approvals.length}`)} ${who}`;
    }
    case "step_verified": {
      const b = m.body;
      const v = b.verdict === "passed" ? green(b.verdict) : red(b.verdict);
      const failed = b.checks.filter((x) => !x.ok).map((x) => `${x.name}: ${x.detail}`);
      return `  ${step}verified ${v} (${b.checks.length} checks${failed.length ? `; ${failed.join("; ")}` : ""}) ${who}`;
    }
    case "recovery_decided":
      return `  ${step}recovery ${yellow(m.body.action)}: ${m.body.reason} ${who}`;
    case "run_closed": {
      const b = m.body;
      const o = b.outcome === "completed" ? green(b.outcome) : red(b.outcome);
      return `${bold(m.run)} closed ${o} after ${b.steps} step(s): ${b.reason} ${dim(`receipt ${b.receipt.head.slice(0, 16)}… over ${b.receipt.events} events`)}`;
    }
    case "message_rejected":
      return `  ${yellow("rejected")} by ${m.body.by}: ${m.body.code}: ${m.body.reason} ${dim(`(${m.body.subject} #${m.body.seq ?? "?"})`)}`;
    case "step_held":
      return `  ${step}${yellow("held")} until ${new Date(m.body.until).toISOString()}: ${m.body.reason} ${who}`;
    case "subject_erased":
      return `${bold(m.run)} ${red("erased")} the personal data of ${m.body.subject} (${m.body.keyDestroyed ? "key destroyed" : "no key was held"}): ${m.body.reason} ${who}`;
    default: {
      const never: never = m;
      return String(never);
    }
  }
}
