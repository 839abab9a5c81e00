import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Bus } from "@trias/bus";
import {
  ConsoleClient,
  Stack,
  auditEvents,
  pendingHuman,
  readRun,
  waiting,
  type StoredEvent,
} from "@trias/console";
import { runFilter, subjectFor, type Kind, type Role } from "@trias/protocol";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { dist, round, type Dist } from "./stats.js";

/**
 * Trace sizes the cold paths are measured at (stored messages).
 * @default [10_000, 200_000]
 */
export const COLD_PATH_SIZES = [10_000, 200_000];

/** Times each read is measured at each size. */
const REPEATS = 5;

/** Times the reads of the whole trace are measured (13 s each at 200,000 messages here). */
const REPEATS_FULL = 3;

/** Messages of one filler run: a submission, three steps proposed, assigned and executed. */
const FILLER_KINDS: [Role, Kind][] = [
  ["console", "task_submitted"],
  ...Array.from({ length: 3 }, (): [Role, Kind][] => [
    ["proposer", "step_proposed"],
    ["router", "tier_assigned"],
    ["executor", "step_executed"],
  ]).flat(),
];

/** Bytes of a filler message: about a signed frame of a light step. */
const FILLER_BYTES = 600;

/** Filler publishes in flight at once. */
const FILLER_IN_FLIGHT = 1_000;

export interface ColdPathRead {
  /** Wall time of the read and what the command does with it (audit, or the pending list). */
  ms: Dist;
  /** Stored messages the read fetched. */
  fetched: number;
}

export interface ColdPathPoint {
  /** Messages in the trace when measured. */
  stored: number;
  /** `trias pending` across runs: the whole trace read (before), the pending index (after). */
  pending: { before: ColdPathRead; after: ColdPathRead };
  /** `trias audit <run>` of a run stored before all the filler: filtered from seq 1 (before), from its start (after). */
  audit: { before: ColdPathRead; after: ColdPathRead };
  /** Reading the run stored last (a filler run, no audit): filtered from seq 1, from its start. */
  lateRead: { before: ColdPathRead; after: ColdPathRead };
}

export interface ColdPathResult {
  name: string;
  /** The run audited and the run waiting for a person, both stored before the filler. */
  auditedEvents: number;
  pendingSteps: number;
  points: ColdPathPoint[];
}

async function timed<T>(
  bus: Bus,
  f: () => Promise<T>,
  repeats = REPEATS,
): Promise<{ value: T; ms: number[]; fetched: number }> {
  const ms: number[] = [];
  let value!: T;
  let fetched = 0;
  for (let i = 0; i < repeats; i++) {
    const before = bus.stats().read;
    const t0 = performance.now();
    value = await f();
    ms.push(performance.now() - t0);
    fetched = bus.stats().read - before;
  }
  return { value, ms, fetched };
}

const asEvents = (stored: Awaited<ReturnType<Bus["readAll"]>>): StoredEvent[] =>
  stored.map((m) => ({
    seq: m.seq,
    subject: m.subject,
    data: m.data,
    headers: m.headers,
    timestampMs: m.timestampMs,
  }));

/** Store filler runs until the trace holds `target` messages. */
async function fill(bus: Bus, target: number, from: number): Promise<number> {
  let stored = (await bus.streamInfo()).state.messages;
  let n = from;
  const payload = randomBytes(FILLER_BYTES);
  while (stored < target) {
    const batch: Promise<unknown>[] = [];
    while (batch.length < FILLER_IN_FLIGHT && stored + batch.length < target) {
      const run = `fill-${n++}`;
      for (const [role, kind] of FILLER_KINDS)
        if (stored + batch.length < target)
          batch.push(bus.publish(subjectFor(role, kind, run), payload, {}));
    }
    await Promise.all(batch);
    stored += batch.length;
  }
  return n;
}

/**
 * `trias pending` and `trias audit <run>` at each trace size, the read they made before the
 * indexed cold paths (a filtered read from seq 1, the whole trace for pending) against the
 * one they make now (docs/scaling.md, "Cold paths"). A real stack makes one completed run and
 * one run waiting for a person; then the agents stop and filler runs (unsigned frames on the
 * run subjects, ten messages each) grow the trace, so that the two runs are the oldest in it:
 * the case a read from the run's start alone would not help.
 */
export async function benchColdPaths(sizes = COLD_PATH_SIZES): Promise<ColdPathResult> {
  const dir = mkdtempSync(join(tmpdir(), "trias-bench-coldpath-"));
  const stack = await Stack.start({
    keyDir: join(dir, "keys"),
    logDir: join(dir, "logs"),
    // Staging asks a person before an account is closed.
    environment: "staging",
    env: { LOG_LEVEL: "warn" },
  });
  try {
    const bus = stack.admin;
    const registry = KeyRegistry.load(stack.registryFile);
    const client = new ConsoleClient(
      bus,
      Signer.load(join(dir, "keys", keyFileName("console"))),
      registry,
    );
    const { run: audited } = await client.submit({
      goal: "balance",
      program: "balance-check",
      input: { account: "alice" },
      requestedBy: "bench",
    });
    const { run: waitingRun } = await client.submit({
      goal: "close dave",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "bench",
    });
    const closed = await client.waitForClose([audited], 60_000);
    if (closed.get(audited)?.body.outcome !== "completed")
      throw new Error(`cold path bench: run ${audited} did not complete`);
    // Wait until the run waiting for a person is still: its step asked, the pending index
    // written (by the verifier), both reviewers heard.
    const deadline = Date.now() + 60_000;
    for (;;) {
      const steps = await pendingHuman(bus, registry);
      const verdicts = (await bus.readAll(subjectFor("reviewer", "verdict", waitingRun))).length;
      if (steps.some((w) => w.run === waitingRun) && verdicts >= 2) break;
      if (Date.now() > deadline)
        throw new Error(`cold path bench: run ${waitingRun} never waited for a person`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await stack.killAll();

    const points: ColdPathPoint[] = [];
    let next = 0;
    let auditedEvents = 0;
    let pendingSteps = 0;
    for (const size of [...sizes].sort((a, b) => a - b)) {
      next = await fill(bus, size, next);
      const pendingBefore = await timed(
        bus,
        async () => [...waiting(registry, await bus.readAll("trias.>")).values()],
        REPEATS_FULL,
      );
      const pendingAfter = await timed(bus, () => pendingHuman(bus, registry));
      const auditBefore = await timed(bus, async () =>
        auditEvents(registry, audited, asEvents(await bus.readAll(runFilter(audited)))),
      );
      const auditAfter = await timed(bus, async () =>
        auditEvents(registry, audited, await readRun(bus, audited)),
      );
      // The read alone of the run stored last (a filler run): what a run that is not among
      // the oldest costs to read filtered from seq 1, on nats-server 2.9 a scan of the trace.
      const late = `fill-${next - 2}`;
      const lateBefore = await timed(bus, () => bus.readAll(runFilter(late)));
      const lateAfter = await timed(bus, () => bus.readRun(late));
      if (lateBefore.value.length !== lateAfter.value.messages.length || lateAfter.value.fallback)
        throw new Error(`cold path bench: run ${late} reads differently from its start`);
      // The same answers both ways, or the figures compare different work.
      const runsOf = (w: { run: string; step: number }[]) => w.map((x) => `${x.run}/${x.step}`);
      if (
        JSON.stringify(runsOf(pendingBefore.value)) !== JSON.stringify(runsOf(pendingAfter.value))
      )
        throw new Error("cold path bench: pending differs between the full read and the index");
      if (
        !auditBefore.value.ok ||
        !auditAfter.value.ok ||
        auditBefore.value.recomputedHead !== auditAfter.value.recomputedHead
      )
        throw new Error("cold path bench: the audit differs between the two reads, or fails");
      auditedEvents = auditAfter.value.events;
      pendingSteps = pendingAfter.value.length;
      const read = (r: { ms: number[]; fetched: number }): ColdPathRead => ({
        ms: dist(r.ms),
        fetched: r.fetched,
      });
      points.push({
        stored: (await bus.streamInfo()).state.messages,
        pending: { before: read(pendingBefore), after: read(pendingAfter) },
        audit: { before: read(auditBefore), after: read(auditAfter) },
        lateRead: { before: read(lateBefore), after: read(lateAfter) },
      });
    }
    return {
      name: `${REPEATS} reads at each size (${REPEATS_FULL} of the whole trace), file storage`,
      auditedEvents,
      pendingSteps,
      points,
    };
  } finally {
    await stack.stop().catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One line per size, for the bench's output. */
export function coldPathLines(r: ColdPathResult): string[] {
  const f = (x: number) => round(x, 1).toString();
  return r.points.map(
    (p) =>
      `  ${p.stored} stored: pending p50 ${f(p.pending.before.ms.p50)} -> ${f(p.pending.after.ms.p50)} ms (fetched ${p.pending.before.fetched} -> ${p.pending.after.fetched}); audit p50 ${f(p.audit.before.ms.p50)} -> ${f(p.audit.after.ms.p50)} ms (fetched ${p.audit.before.fetched} -> ${p.audit.after.fetched}); read of the newest run p50 ${f(p.lateRead.before.ms.p50)} -> ${f(p.lateRead.after.ms.p50)} ms`,
  );
}
