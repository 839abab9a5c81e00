/**
 * Every in-memory cache an agent keeps is bounded, so that memory stays flat however long
 * it runs (pnpm bench --memory). These add an entry and, past `limit`, drop the oldest
 * insertions; what is dropped is rebuilt from the trace or the effects bucket when needed.
 */
export function boundedSet<K, V>(m: Map<K, V>, key: K, value: V, limit: number): void {
  if (!m.has(key)) evictOldest(m, limit);
  m.set(key, value);
}

export function boundedAdd<K>(s: Set<K>, key: K, limit: number): void {
  if (!s.has(key)) evictOldest(s, limit);
  s.add(key);
}

/**
 * Past the limit, the oldest sixteenth goes in one pass. Dropping one entry per insert
 * costs a walk over every entry deleted since the table was last compacted (V8's ordered
 * tables keep deleted slots until they rehash): docs/decisions/007-chunked-eviction.md.
 */
function evictOldest<K>(
  c: { size: number; keys(): IterableIterator<K>; delete(k: K): boolean },
  limit: number,
): void {
  if (c.size < limit) return;
  let n = c.size - limit + 1 + (limit >> 4);
  for (const k of c.keys()) {
    if (n-- <= 0) break;
    c.delete(k);
  }
}
