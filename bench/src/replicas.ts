// `pnpm bench --replicas`: light steps with one replica of each agent identity against two
// (docs/scaling.md, section 2). Figures, no target: on a machine with two cores, twice the
// processes share the same cores, so this measures what partitioning costs, not what it gains
// on more machines.
import { Governed } from "./governed.js";
import { dist, round, type Dist } from "./stats.js";

export interface ReplicaRow {
  replicas: number;
  inFlight: number;
  steps: number;
  stepsPerSec: number;
  latencyMs: Dist;
  /** CPU milliseconds per step of every agent process together. */
  cpuPerStepMs: number;
  failures: string[];
}

export interface ReplicaBenchOptions {
  rounds: number;
  segMs: number;
  levels: readonly number[];
  stepsPerRun: number;
  env: Record<string, string>;
  /** Told when a stack started, so the caller can take its processes down on Ctrl-C. */
  started?: (gov: Governed) => void;
}

/** Each replica count on its own stack, one after the other (never both at once). */
export async function benchReplicas(o: ReplicaBenchOptions): Promise<ReplicaRow[]> {
  const rows: ReplicaRow[] = [];
  for (const replicas of [1, 2]) {
    const gov = await Governed.start({ env: o.env, replicas });
    o.started?.(gov);
    try {
      // Warm-up as the main bench's (JIT, connections, leases settled), not measured.
      await gov.segment("light", 32, 4_000, o.stepsPerRun, false);
      await gov.segment("light", 1, 500, o.stepsPerRun, false);
      for (const n of o.levels) {
        let steps = 0;
        let wallMs = 0;
        let cpuMs = 0;
        const latencies: number[] = [];
        const failures: string[] = [];
        for (let r = 0; r < o.rounds; r++) {
          const s = await gov.segment("light", n, o.segMs, o.stepsPerRun, false);
          steps += s.steps;
          wallMs += s.wallMs;
          latencies.push(...s.latencies);
          failures.push(...s.failures);
          for (const name of gov.pids.keys()) cpuMs += s.cpuMs[name] ?? 0;
        }
        rows.push({
          replicas,
          inFlight: n,
          steps,
          stepsPerSec: wallMs > 0 ? round((steps * 1000) / wallMs, 1) : 0,
          latencyMs: dist(latencies),
          cpuPerStepMs: round(cpuMs / Math.max(1, steps), 3),
          failures,
        });
      }
    } finally {
      await gov.stop();
    }
  }
  return rows;
}
