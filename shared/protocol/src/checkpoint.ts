import { z } from "zod";
import { Bytes, Digest, Receipt, RunId, RunOutcome } from "./schemas.js";

/** The JWS `typ` of a receipt checkpoint (docs/receipts.md, "The checkpoint"). */
export const CHECKPOINT_TYP = "trias-checkpoint+json";

/**
 * One entry of the chain of closed runs: the verifier signs it (a compact JWS, EdDSA) once
 * per run, after the run's run_closed is stored. `anchor` chains every entry to the one
 * before, so a run purged from the trace is still named by its entry, and an entry removed
 * from the chain breaks the links after it.
 */
export const ReceiptCheckpoint = z.object({
  v: z.literal(1),
  /** Position in the chain, from 1, without gaps. */
  n: z.number().int().positive(),
  run: RunId,
  /** Stream seq of the run_closed that carries the receipt. */
  closeSeq: z.number().int().positive(),
  outcome: RunOutcome,
  receipt: Receipt.omit({ links: true }),
  /** The anchor of entry n-1 (64 zeros for n = 1). */
  prev: Digest,
  /** sha256("trias-anchor-v1|" || prev || u64be(n) || sha256(run) || u64be(closeSeq) || head). */
  anchor: Digest,
  /** When the verifier signed it (ms since the epoch); informative. */
  at: z.number().int().nonnegative(),
});
export type ReceiptCheckpoint = z.infer<typeof ReceiptCheckpoint>;

/** The export file's format tag (docs/receipts.md, "Export file"). */
export const TRACE_FORMAT = "trias-trace/v1";

/** A run's trace saved for an offline audit: msgpack of this map. */
export const TraceExport = z.object({
  format: z.literal(TRACE_FORMAT),
  run: RunId,
  events: z.array(
    z.object({
      /** Stream sequence number. */
      seq: z.number().int().nonnegative(),
      subject: z.string(),
      /** The stored signed frame, byte for byte. */
      data: Bytes,
      /** NATS headers as stored; not covered by any signature. */
      headers: z.record(z.string(), z.string()),
      /** When the server stored it (ms since the epoch), 0 when unknown. */
      timestampMs: z.number().int().nonnegative(),
    }),
  ),
  /** The run's checkpoint (compact JWS) when it was anchored; absent otherwise. */
  checkpoint: z.string().optional(),
});
export type TraceExport = z.infer<typeof TraceExport>;

/** Validate a decoded export: the value, or every field that is wrong in words. */
export function parseTraceExport(
  raw: unknown,
): { ok: true; value: TraceExport } | { ok: false; error: string } {
  const r = TraceExport.safeParse(raw);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: z.prettifyError(r.error) };
}
