import { PENDING_BUCKET, isPermissionError, isTransientFailure, type Bus } from "@trias/bus";
import { asksForHuman, type Message } from "@trias/protocol";
import type { Logger } from "@trias/runtime";

type KV = Awaited<ReturnType<Bus["kv"]>>;

/**
 * Keeps the pending index (PENDING_BUCKET, docs/scaling.md "Cold paths"): a run's key is put
 * when an assignment of the run asks a person, and removed when the run closes. Both writes
 * are idempotent, so a redelivered message writes again and changes nothing. The verifier
 * keeps it because it follows every run to its close; readers check each run's trace, so a
 * key left behind (a put redelivered after the close) shows nothing.
 */
export class PendingIndex {
  readonly #bus: Bus;
  readonly #kv: KV;
  readonly #log: Logger;

  constructor(bus: Bus, kv: KV, log: Logger) {
    this.#bus = bus;
    this.#kv = kv;
    this.#log = log;
  }

  /**
   * Record what `m` changes in the index. A transient failure throws (the message comes back
   * and writes again); any other (a NATS configuration older than the bucket) is logged: a
   * hint is not worth holding a run up.
   */
  async observe(m: Message, seq: number): Promise<void> {
    try {
      if (m.kind === "tier_assigned" && m.step !== null && asksForHuman(m.body))
        await this.#kv.put(m.run, String(seq));
      else if (m.kind === "run_closed") {
        // Removed, not deleted: a KV delete leaves a marker per run, and most runs never had a key.
        const e = await this.#kv.get(m.run);
        if (e && e.operation === "PUT")
          await this.#bus.removeMessage(`KV_${PENDING_BUCKET}`, e.revision);
      }
    } catch (e) {
      if (isTransientFailure(e) && !isPermissionError(e)) throw e;
      this.#log.warn(
        { run: m.run, seq, kind: m.kind, err: String(e) },
        "pending index not updated: `trias pending` may miss or list this run",
      );
    }
  }
}
