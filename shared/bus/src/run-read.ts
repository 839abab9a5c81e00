/**
 * Reading one run without reading the stream: the rule that says whether a read that started
 * at the run's first task_submitted got the whole run (docs/scaling.md, "Cold paths").
 */

/** One message read, as far as the check needs it. */
export interface ReadMessage {
  subject: string;
  seq: number;
}

/** What the stream counted of the run when the read began, per subject, and up to which seq. */
export interface RunCount {
  /** Messages per subject of the run (the stream's per-subject state). */
  counts: Readonly<Record<string, number>>;
  /** The stream's last sequence when it counted: later messages are not in `counts`. */
  lastSeq: number;
}

/**
 * Why a read of a run that started at `start` is not the run's whole trace, or null when it
 * is: every message the stream counted on each of the run's subjects was read. A subject with
 * fewer messages read than counted holds messages stored before the start (the run's
 * task_submitted is not its first message), or lost some to a purge since; either way only a
 * read from the stream's beginning is exact. `start` null: the stream holds no task_submitted
 * of the run (purged, aged out, never submitted), so there is no start to read from.
 */
export function runReadGap(
  run: string,
  start: number | null,
  count: RunCount,
  read: readonly ReadMessage[],
): string | null {
  if (start === null)
    return `the trace holds no task_submitted of run ${run}: no start to read from`;
  const got = new Map<string, number>();
  for (const m of read)
    if (m.seq <= count.lastSeq) got.set(m.subject, (got.get(m.subject) ?? 0) + 1);
  for (const [subject, n] of Object.entries(count.counts).sort(([a], [b]) => a.localeCompare(b))) {
    const have = got.get(subject) ?? 0;
    if (have < n)
      return `${n - have} message(s) on ${subject} are stored before run ${run}'s task_submitted at seq ${start}`;
  }
  return null;
}
