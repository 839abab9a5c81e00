import type { KV } from "@nats-io/kv";
import { isRevisionConflict, swapSoleKey } from "@trias/bus";
import { TransientError, type JsonValue } from "@trias/protocol";
import { ToolRefusal } from "./pack.js";

export interface Account {
  balance: number;
  open: boolean;
}

export interface LedgerState {
  accounts: Record<string, Account>;
  /** Effect id -> recorded result. A tool effect is applied at most once per effect id. */
  applied: Record<string, JsonValue>;
}

export const LEDGER_BUCKET = "trias_ledger";
const KEY = "state";

export const DEMO_ACCOUNTS: Record<string, Account> = {
  alice: { balance: 1000, open: true },
  bob: { balance: 500, open: true },
  carol: { balance: 250, open: true },
  dave: { balance: 0, open: true },
  treasury: { balance: 100_000, open: true },
};

const enc = new TextEncoder();
const dec = new TextDecoder();

/**
 * The demo ledger: one JSON document, the only key of its KV bucket, changed only by
 * compare-and-set on its revision (swapSoleKey, which holds on a replicated bucket, where
 * concurrent KV.update calls overwrote each other: docs/scaling.md, section 1), so any
 * number of executor replicas apply each effect exactly once.
 */
export class Ledger {
  /**
   * This process's ledger writes, one at a time (every Ledger of a process writes the same
   * key), each starting once the previous one has settled: concurrent ones would all read the
   * same revision, and all but one would conflict and go round again.
   */
  static #writes: Promise<unknown> = Promise.resolve();
  readonly #kv: KV;
  constructor(kv: KV) {
    this.#kv = kv;
  }

  async read(): Promise<{ state: LedgerState; revision: number }> {
    const e = await this.#kv.get(KEY);
    if (!e || e.operation !== "PUT" || e.value.length === 0)
      return { state: { accounts: {}, applied: {} }, revision: 0 };
    return { state: JSON.parse(dec.decode(e.value)) as LedgerState, revision: e.revision };
  }

  /** Create the ledger with the demo accounts if it does not exist yet. */
  async seed(accounts: Record<string, Account> = DEMO_ACCOUNTS): Promise<boolean> {
    try {
      await this.#kv.create(
        KEY,
        enc.encode(JSON.stringify({ accounts, applied: {} } satisfies LedgerState)),
      );
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Apply `fn` once for `effectId`. If the id was applied before (a redelivery, a crash after
   * the write), return the recorded result without touching the state again.
   */
  apply(
    effectId: string,
    fn: (s: LedgerState) => JsonValue,
  ): Promise<{ result: JsonValue; replayed: boolean }> {
    const next = Ledger.#writes.then(() => this.#apply(effectId, fn));
    Ledger.#writes = next.catch(() => undefined);
    return next;
  }

  async #apply(
    effectId: string,
    fn: (s: LedgerState) => JsonValue,
  ): Promise<{ result: JsonValue; replayed: boolean }> {
    for (let attempt = 0; attempt < 50; attempt++) {
      const { state, revision } = await this.read();
      const prior = state.applied[effectId];
      if (prior !== undefined) return { result: prior, replayed: true };
      const next: LedgerState = structuredClone(state);
      const result = fn(next);
      next.applied[effectId] = result;
      try {
        if (revision === 0) await this.#kv.create(KEY, enc.encode(JSON.stringify(next)));
        else await swapSoleKey(this.#kv, KEY, enc.encode(JSON.stringify(next)), revision);
        return { result, replayed: false };
      } catch (e) {
        if (!isRevisionConflict(e)) {
          throw new TransientError(
            "bus_unavailable",
            `ledger write failed: ${(e as Error).message}`,
            { cause: e },
          );
        }
        // Another writer got there first: read again and retry.
      }
    }
    throw new TransientError("timeout", `ledger write for ${effectId} kept conflicting`);
  }
}

export function account(s: LedgerState, name: string): Account {
  const a = s.accounts[name];
  if (!a) throw new ToolRefusal(`account "${name}" does not exist`);
  if (!a.open) throw new ToolRefusal(`account "${name}" is closed`);
  return a;
}
