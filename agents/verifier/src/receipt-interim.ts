import { createHash } from "node:crypto";
import type { Receipt } from "@trias/protocol";

// Interim chain until @trias/runstate's receipt lands; same definition.
export function computeReceipt(
  events: readonly { seq: number; subject: string; frame: Uint8Array }[],
  run: string,
): Receipt {
  let h = createHash("sha256").update(`trias-receipt-v1|${run}`).digest();
  for (const e of events) {
    const seq = Buffer.alloc(8);
    seq.writeBigUInt64BE(BigInt(e.seq));
    h = createHash("sha256")
      .update(h)
      .update(seq)
      .update(createHash("sha256").update(e.subject).digest())
      .update(createHash("sha256").update(e.frame).digest())
      .digest();
  }
  return {
    alg: "sha256-chain/v1",
    head: h.toString("hex"),
    events: events.length,
    firstSeq: events[0]?.seq ?? 0,
    lastSeq: events.at(-1)?.seq ?? 0,
  };
}
