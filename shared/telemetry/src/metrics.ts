import {
  metrics as otelMetrics,
  type Counter,
  type Histogram,
  type MeterProvider,
} from "@opentelemetry/api";
import {
  ATTR_TRIAS_OUTCOME,
  ATTR_TRIAS_PHASE,
  ATTR_TRIAS_REASON_CODE,
  ATTR_TRIAS_RECOVERY_ACTION,
  ATTR_TRIAS_REVIEWER,
  ATTR_TRIAS_TIER,
  ATTR_TRIAS_VERDICT,
} from "./attributes.js";
import { INSTRUMENTATION_SCOPE } from "./span.js";

export const METRIC_STEPS = "trias.steps";
export const METRIC_VERDICTS = "trias.verdicts";
export const METRIC_GATE_REJECTIONS = "trias.gate.rejections";
export const METRIC_RECOVERY_ACTIONS = "trias.recovery.actions";
export const METRIC_STEP_DURATION = "trias.step.duration";

/** Bucket bounds of trias.step.duration in ms: tool calls to human approvals. */
export const STEP_DURATION_BUCKETS_MS: readonly number[] = [
  1, 5, 10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 30_000, 60_000, 300_000, 1_800_000,
];

interface Instruments {
  steps: Counter;
  verdicts: Counter;
  rejections: Counter;
  recoveries: Counter;
  stepDuration: Histogram;
}

// Instruments are made from the global meter on first use, and made again if the global
// meter provider changes (e.g. the SDK is started after a first no-op use), so a call
// before initTelemetry never pins a no-op instrument forever.
let cache: { provider: MeterProvider; instruments: Instruments } | undefined;

function instruments(): Instruments {
  const provider = otelMetrics.getMeterProvider();
  if (cache !== undefined && cache.provider === provider) return cache.instruments;
  const meter = provider.getMeter(INSTRUMENTATION_SCOPE);
  const made: Instruments = {
    steps: meter.createCounter(METRIC_STEPS, {
      description: "Steps finished, by tier and outcome.",
      unit: "{step}",
    }),
    verdicts: meter.createCounter(METRIC_VERDICTS, {
      description: "Review verdicts, by reviewer and decision.",
      unit: "{verdict}",
    }),
    rejections: meter.createCounter(METRIC_GATE_REJECTIONS, {
      description: "Messages refused by the executor's gate, by reason code.",
      unit: "{rejection}",
    }),
    recoveries: meter.createCounter(METRIC_RECOVERY_ACTIONS, {
      description: "Recovery actions chosen, by action.",
      unit: "{action}",
    }),
    stepDuration: meter.createHistogram(METRIC_STEP_DURATION, {
      description: "Step latency by tier and phase (phase `total` is the whole step).",
      unit: "ms",
      advice: { explicitBucketBoundaries: [...STEP_DURATION_BUCKETS_MS] },
    }),
  };
  cache = { provider, instruments: made };
  return made;
}

/** Phases of a step, for trias.step.duration. Free-form strings are accepted too. */
export type StepPhase =
  "propose" | "route" | "review" | "approve" | "execute" | "verify" | "recover" | "total";

/**
 * Governance metrics. Every call is a no-op (no allocation beyond the attributes object)
 * while the SDK is not started.
 */
export const metrics = {
  /** A step reached its end: outcome e.g. verified, compensated, escalated, quarantined, rejected, failed. `ms` is recorded as phase `total`. */
  stepCompleted(tier: string, outcome: string, ms?: number): void {
    const i = instruments();
    i.steps.add(1, { [ATTR_TRIAS_TIER]: tier, [ATTR_TRIAS_OUTCOME]: outcome });
    if (ms !== undefined)
      i.stepDuration.record(ms, { [ATTR_TRIAS_TIER]: tier, [ATTR_TRIAS_PHASE]: "total" });
  },
  /** Latency of one phase of a step. */
  phaseDuration(tier: string, phase: StepPhase | (string & {}), ms: number): void {
    instruments().stepDuration.record(ms, { [ATTR_TRIAS_TIER]: tier, [ATTR_TRIAS_PHASE]: phase });
  },
  /** One reviewer's verdict (approve, revise, reject, ask_user, escalate). */
  verdict(reviewer: string, decision: string): void {
    instruments().verdicts.add(1, {
      [ATTR_TRIAS_REVIEWER]: reviewer,
      [ATTR_TRIAS_VERDICT]: decision,
    });
  },
  /** The executor's gate refused a message. */
  gateRejection(reasonCode: string): void {
    instruments().rejections.add(1, { [ATTR_TRIAS_REASON_CODE]: reasonCode });
  },
  /** The verifier chose a recovery action (retry, replan, rollback, escalate, quarantine). */
  recoveryAction(action: string): void {
    instruments().recoveries.add(1, { [ATTR_TRIAS_RECOVERY_ACTION]: action });
  },
} as const;

export type TriasMetrics = typeof metrics;
