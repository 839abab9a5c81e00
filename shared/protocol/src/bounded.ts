/**
 * Every in-memory cache an agent keeps is bounded, so that memory stays flat however long
 * it runs (pnpm bench --memory). These add an entry and, past `limit`, drop the oldest
 * insertion; what is dropped is rebuilt from the trace or the effects bucket when needed.
 */
export function boundedSet<K, V>(m: Map<K, V>, key: K, value: V, limit: number): void {
  if (!m.has(key)) evictOldest(m, limit);
  m.set(key, value);
}

export function boundedAdd<K>(s: Set<K>, key: K, limit: number): void {
  if (!s.has(key)) evictOldest(s, limit);
  s.add(key);
}

function evictOldest<K>(
  c: { size: number; keys(): IterableIterator<K>; delete(k: K): boolean },
  limit: number,
): void {
  while (c.size >= limit) {
    const oldest = c.keys().next();
    if (oldest.done) return;
    c.delete(oldest.value);
  }
}
