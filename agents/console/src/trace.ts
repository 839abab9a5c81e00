import type { Message } from "@trias/protocol";
import { CAUSE_HEADER } from "@trias/runtime";
import type { KeyRegistry, RegisteredKey } from "@trias/signing";
import type { StoredEvent } from "./audit.js";
import { describe, dim } from "./format.js";

interface Node {
  ev: StoredEvent;
  message: Message;
  key: RegisteredKey;
  children: Node[];
}

function spanId(m: Message): string {
  return m.trace?.traceparent.split("-")[2] ?? "-";
}

/**
 * A run's causal tree from the stream alone: each message under the one whose handling
 * emitted it (the `trias-cause` header), a rejection under what it refused. With tracing on,
 * each line also names its span, so it can be found in Jaeger.
 */
export function traceTree(
  registry: KeyRegistry,
  run: string,
  stored: readonly StoredEvent[],
  erased: ReadonlySet<string> = new Set(),
): string[] {
  const nodes: Node[] = [];
  const byId = new Map<string, Node>();
  const bySeq = new Map<number, Node>();
  const unverifiable: StoredEvent[] = [];
  for (const ev of stored) {
    try {
      const o = registry.open(ev.data);
      const n: Node = { ev, message: o.message, key: o.key, children: [] };
      nodes.push(n);
      byId.set(o.message.id, n);
      bySeq.set(ev.seq, n);
    } catch {
      unverifiable.push(ev);
    }
  }
  const roots: Node[] = [];
  for (const n of nodes) {
    const m = n.message;
    const cause = n.ev.headers?.[CAUSE_HEADER];
    const parent =
      (m.kind === "message_rejected" && m.body.seq !== null ? bySeq.get(m.body.seq) : undefined) ??
      (cause ? byId.get(cause) : undefined);
    if (parent && parent !== n) parent.children.push(n);
    else roots.push(n);
  }
  const first = nodes[0];
  const traceId = first?.message.trace?.traceparent.split("-")[1];
  const lines = [`${run}${traceId ? `  trace ${traceId}` : ""}  (${stored.length} messages)`];
  const t0 = first?.ev.timestampMs ?? first?.message.issuedAt ?? 0;
  const walk = (n: Node, depth: number) => {
    const at = (n.ev.timestampMs ?? n.message.issuedAt) - t0;
    const text = (describe(n.message, n.key, erased) ?? n.message.kind).replace(/^\s+/, "");
    lines.push(
      `${"  ".repeat(depth)}${dim(`#${n.ev.seq} +${at}ms span ${spanId(n.message)}`)} ${text}`,
    );
    for (const c of n.children) walk(c, depth + 1);
  };
  for (const r of roots) walk(r, 1);
  for (const u of unverifiable)
    lines.push(`  ${dim(`#${u.seq}`)} unverifiable message on ${u.subject} (refused on arrival)`);
  return lines;
}
