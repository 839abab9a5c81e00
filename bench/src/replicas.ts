// `pnpm bench --replicas` and `--cluster`: light steps on one deployment against another
// (docs/scaling.md): one replica of each agent identity against two, one server against a
// 3-node cluster at R3. Figures, no target: on a machine with two cores every extra process
// shares the same cores, so this measures what each costs, not what it gains on more machines.
import { Governed, type GovernedOptions } from "./governed.js";
import { dist, round, type Dist } from "./stats.js";

export interface VariantRow {
  /** The deployment measured (see DEPLOYMENTS). */
  variant: string;
  inFlight: number;
  steps: number;
  stepsPerSec: number;
  latencyMs: Dist;
  /** CPU milliseconds per step of every agent process together. */
  cpuPerStepMs: number;
  failures: string[];
}

/** The deployments each comparison measures, the reference first. */
export const DEPLOYMENTS: Record<"replicas" | "cluster", [string, GovernedOptions][]> = {
  replicas: [
    ["1 replica", { replicas: 1 }],
    ["2 replicas", { replicas: 2 }],
  ],
  cluster: [
    ["R1, 1 server", {}],
    ["R3, 3 servers", { cluster: true }],
  ],
};

export interface VariantBenchOptions {
  rounds: number;
  segMs: number;
  levels: readonly number[];
  stepsPerRun: number;
  env: Record<string, string>;
  /** Told when a stack started, so the caller can take its processes down on Ctrl-C. */
  started?: (gov: Governed) => void;
}

/** Each deployment on its own stack, one after the other (never two at once). */
export async function benchVariants(
  variants: readonly [string, GovernedOptions][],
  o: VariantBenchOptions,
): Promise<VariantRow[]> {
  const rows: VariantRow[] = [];
  for (const [variant, opts] of variants) {
    const gov = await Governed.start({ ...opts, env: o.env });
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
          variant,
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
