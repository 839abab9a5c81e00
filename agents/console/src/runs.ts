import type { StoredMessage } from "@trias/bus";
import type { Message } from "@trias/protocol";
import type { KeyRegistry } from "@trias/signing";
import { describe } from "./format.js";
import { waiting, type WaitingStep } from "./human.js";

/** One run as the runs list shows it. */
export interface RunRow {
  run: string;
  goal: string;
  requestedBy: string;
  environment: string;
  tools: string[];
  startedAt: number;
  updatedAt: number;
  outcome: string | null;
  closeReason: string;
  /** The last message, in words. */
  last: string;
  /** Set while the run is escalated: what the verifier said, until a person decides. */
  escalated: string | null;
  /** Why the router holds the current step back (its tool's rate limit), null when it does not. */
  held: string | null;
  /** Messages of an open run, to find its steps waiting for a human; dropped once it closes. */
  stored: StoredMessage[];
}

const ANSI = /\u001b\[[0-9;]*m/g;

/** What a step waiting for people still needs, in words. */
export function needs(w: WaitingStep): string {
  const groups = w.requires.humans ?? [];
  const have = w.approvedBy.length ? `; approved by ${w.approvedBy.join(", ")}` : "";
  return groups.length
    ? `${groups.map((g) => `${g.count} of group ${g.group}`).join(" + ")}${have}`
    : `one human${have}`;
}

/**
 * Every run, folded from the trace in order: fed once from the stream's start and then
 * live (the web console), or from one read (`trias runs`). Open runs keep their messages
 * to find steps waiting for people; closed ones keep only their row.
 */
export class RunIndex {
  readonly #registry: KeyRegistry;
  readonly #runs = new Map<string, RunRow>();

  constructor(registry: KeyRegistry) {
    this.#registry = registry;
  }

  /** Fold one stored message in; returns it opened, or null when it does not verify. */
  add(raw: StoredMessage): Message | null {
    let m: Message;
    try {
      m = this.#registry.open(raw.data).message;
    } catch {
      return null;
    }
    let row = this.#runs.get(m.run);
    if (!row) {
      row = {
        run: m.run,
        goal: "",
        requestedBy: "",
        environment: "",
        tools: [],
        startedAt: raw.timestampMs ?? m.issuedAt,
        updatedAt: 0,
        outcome: null,
        closeReason: "",
        last: "",
        escalated: null,
        held: null,
        stored: [],
      };
      this.#runs.set(m.run, row);
    }
    row.updatedAt = raw.timestampMs ?? m.issuedAt;
    if (row.outcome === null) row.stored.push(raw);
    const key = this.#registry.get(m.sender);
    row.last = (key ? (describe(m, key) ?? m.kind) : m.kind).replace(ANSI, "").trim();
    switch (m.kind) {
      case "task_submitted":
        row.goal = m.body.goal;
        row.requestedBy = m.body.requestedBy;
        break;
      case "step_proposed":
        if (!row.tools.includes(m.body.tool)) row.tools.push(m.body.tool);
        row.held = null;
        break;
      case "tier_assigned":
        row.environment = m.body.environment;
        row.held = null;
        break;
      case "step_held":
        row.held = `step ${m.step ?? 0} held back by ${m.body.tool}'s rate limit until ${new Date(m.body.until).toISOString()}: ${m.body.reason}`;
        break;
      case "recovery_decided":
        row.escalated = m.body.action === "escalate" ? m.body.reason : null;
        break;
      case "run_closed":
        row.outcome = m.body.outcome;
        row.closeReason = m.body.reason;
        row.escalated = null;
        row.held = null;
        row.stored = [];
        break;
      default:
        break;
    }
    return m;
  }

  rows(): RunRow[] {
    return [...this.#runs.values()];
  }

  get(run: string): RunRow | undefined {
    return this.#runs.get(run);
  }

  /** Every step waiting for a human, across open runs (from memory, no stream read). */
  pending(): WaitingStep[] {
    const out: WaitingStep[] = [];
    for (const r of this.#runs.values())
      if (r.outcome === null) out.push(...waiting(this.#registry, r.stored).values());
    return out;
  }

  /** Why an open run is open, in words; a closed run says how it ended. */
  why(r: RunRow, pending: WaitingStep[] = this.pending()): string {
    if (r.outcome !== null) return r.closeReason;
    if (r.escalated !== null)
      return `escalated, a person decides (${r.escalated}); trias resolve ${r.run} --action retry|rollback|abandon|resolved`;
    const w = pending.find((p) => p.run === r.run);
    if (w) return `waiting for a human decision on step ${w.step} (${needs(w)})`;
    if (r.held !== null) return r.held;
    return `in progress; last: ${r.last}`;
  }
}
