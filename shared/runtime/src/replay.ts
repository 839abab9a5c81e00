import { hash } from "node:crypto";

/**
 * The envelope ids an agent has received, with the stream sequence each was first seen at
 * (a redelivery has the same sequence, a replay is the same envelope stored again under a
 * new one) and when it expires. Fixed memory, allocated once: a ring in arrival order (ids
 * arrive in about the order they expire, so the oldest end is where expiry happens) and an
 * open-addressing index over it. A Map of id strings to records grew by ~140 bytes an id
 * until its ceiling, several MB of an agent's heap; this holds 24 bytes an id plus 8 a slot.
 * Ids are kept as 64 bits of their SHA-256: a false "replay" would need a collision among
 * the ids held, about 2^-48 at 50,000.
 */
export class ReplayWindow {
  readonly capacity: number;
  readonly #hi: Uint32Array;
  readonly #lo: Uint32Array;
  readonly #seq: Float64Array;
  readonly #expiresAt: Float64Array;
  /** Ring index + 1 per slot; 0 is empty. Twice the capacity, so probes stay short. */
  readonly #slots: Int32Array;
  readonly #mask: number;
  #head = 0;
  #size = 0;
  #lastId: string | undefined;
  #last: [number, number] = [0, 0];

  constructor(capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`replay window capacity must be a positive integer, not ${capacity}`);
    }
    this.capacity = capacity;
    this.#hi = new Uint32Array(capacity);
    this.#lo = new Uint32Array(capacity);
    this.#seq = new Float64Array(capacity);
    this.#expiresAt = new Float64Array(capacity);
    let slots = 2;
    while (slots < capacity * 2) slots *= 2;
    this.#slots = new Int32Array(slots);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  /** The sequence the id was first seen at, or undefined. */
  firstSeen(id: string): number | undefined {
    const [hi, lo] = this.#digest(id);
    const slot = this.#find(hi, lo);
    const at = slot < 0 ? 0 : (this.#slots[slot] ?? 0);
    return at === 0 ? undefined : this.#seq[at - 1];
  }

  /**
   * Record an id not seen before. Ids whose message expired before `liveAfter` go first (an
   * expired message is refused as expired anyway); when full, the oldest goes too (the
   * duplicate window of JetStream and the executor's effect records still stop a replay).
   */
  remember(id: string, seq: number, expiresAt: number, liveAfter: number): void {
    while (
      this.#size > 0 &&
      (this.#size === this.capacity || (this.#expiresAt[this.#head] ?? 0) < liveAfter)
    ) {
      this.#dropOldest();
    }
    const [hi, lo] = this.#digest(id);
    const at = (this.#head + this.#size) % this.capacity;
    this.#hi[at] = hi;
    this.#lo[at] = lo;
    this.#seq[at] = seq;
    this.#expiresAt[at] = expiresAt;
    let slot = lo & this.#mask;
    while (this.#slots[slot] !== 0) slot = (slot + 1) & this.#mask;
    this.#slots[slot] = at + 1;
    this.#size++;
  }

  /** A message's id is looked up, then remembered: hashed once for both. */
  #digest(id: string): [number, number] {
    if (id !== this.#lastId) {
      this.#lastId = id;
      this.#last = digest(id);
    }
    return this.#last;
  }

  /** The slot holding this digest, or -1. */
  #find(hi: number, lo: number): number {
    for (let slot = lo & this.#mask; ; slot = (slot + 1) & this.#mask) {
      const at = this.#slots[slot] ?? 0;
      if (at === 0) return -1;
      if (this.#hi[at - 1] === hi && this.#lo[at - 1] === lo) return slot;
    }
  }

  #dropOldest(): void {
    const at = this.#head + 1;
    let hole = (this.#lo[this.#head] ?? 0) & this.#mask;
    while (this.#slots[hole] !== at) hole = (hole + 1) & this.#mask;
    // Backward-shift deletion: later entries of the probe run move into the hole unless
    // their home slot lies after it, so every lookup still finds its entry without tombstones.
    for (let next = (hole + 1) & this.#mask; ; next = (next + 1) & this.#mask) {
      const moving = this.#slots[next] ?? 0;
      if (moving === 0) break;
      const home = (this.#lo[moving - 1] ?? 0) & this.#mask;
      const stays = hole <= next ? hole < home && home <= next : hole < home || home <= next;
      if (stays) continue;
      this.#slots[hole] = moving;
      hole = next;
    }
    this.#slots[hole] = 0;
    this.#head = (this.#head + 1) % this.capacity;
    this.#size--;
  }
}

function digest(id: string): [number, number] {
  const d = hash("sha256", id, "buffer");
  return [d.readUInt32LE(0), d.readUInt32LE(4)];
}
