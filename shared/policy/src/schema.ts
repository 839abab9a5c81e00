import { z } from "zod";
import {
  HumanQuorum,
  MAX_ARGUMENT_BYTES_CEILING,
  MIN_ARGUMENT_BYTES_LIMIT,
  ReviewStrategy,
  Tier,
} from "@trias/protocol";

/** Default of `limits.maxArgumentBytes`. @default 4_194_304 (4 MiB) */
export const DEFAULT_MAX_ARGUMENT_BYTES = 4 * 1024 * 1024;

export const Operation = z.enum(["read", "write", "batch_write", "delete", "irreversible"]);
export type Operation = z.infer<typeof Operation>;

/**
 * A human requirement: `true` (any one human key) or `{group, count}` (that many distinct
 * human keys of the group, e.g. `{group: treasury, count: 2}`).
 */
export const HumanRequirement = z.union([z.boolean(), HumanQuorum.strict()]);
export type HumanRequirement = z.infer<typeof HumanRequirement>;

export const TierParams = z
  .object({
    /** Distinct reviewer keys that must approve. */
    reviewers: z.number().int().min(0).max(16),
    /** Which reviewer strategies count towards the quorum. */
    strategies: z.array(ReviewStrategy).default(["rules"]),
    /** People who must approve: `true`, or `{group, count}`. @default false (nobody) */
    human: HumanRequirement.default(false),
    /** How long a step may wait for its verdicts (and a human) before it is rejected. */
    reviewTimeoutMs: z.number().int().positive().default(60_000),
    /** How long a step may wait for a human decision. @default 86_400_000 ms (one day) */
    humanTimeoutMs: z
      .number()
      .int()
      .positive()
      .default(24 * 3600_000),
    /** Executions of a step before recovery gives up retrying it. @default 1 */
    maxAttempts: z.number().int().min(1).max(10).default(1),
    /** First retry delay, doubled at each attempt. @default 500 ms */
    backoffMs: z.number().int().min(0).default(500),
    /**
     * strict: a step whose postconditions cannot be read is uncertain and goes to recovery.
     * lenient: it passes (the unread check stays in the signed record); a postcondition read
     * and found wrong fails the step either way.
     */
    verification: z.enum(["lenient", "strict"]).default("strict"),
  })
  .strict();
export type TierParams = z.infer<typeof TierParams>;

/**
 * An argument check the rules reviewer applies to every proposal of one tool: when the CEL
 * condition (over `tool`, `args`, `op`, `domains`, `run`, `env`) holds, the proposal gets
 * `decision` with `message`. Deployment limits live here, not in the reviewer's code.
 */
export const ArgCheck = z
  .object({
    id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/, "check ids are lowercase letters, digits, '_' and '-'"),
    /** The proposal is refused when this holds. */
    when: z.string().min(1),
    message: z.string().min(1),
    /** reject: refused; revise: sent back to the proposer. @default "reject" */
    decision: z.enum(["reject", "revise"]).default("reject"),
  })
  .strict();
export type ArgCheck = z.infer<typeof ArgCheck>;

/**
 * What the router does when a tool's rate limit is reached (docs/rate-limits.md): `delay`
 * holds the step back until the window has room, `deny` refuses it.
 */
export const RateLimit = z
  .object({
    /** Calls allowed in any window of `windowMs`, across all runs. */
    calls: z.number().int().positive(),
    /** The sliding window. @default 60000 (one minute) */
    windowMs: z.number().int().positive().default(60_000),
    /** delay: assign the step once the window has room; deny: refuse it. @default "delay" */
    onExceed: z.enum(["delay", "deny"]).default("delay"),
    /**
     * The longest a step may wait for the rate, counted from its proposal: a step that would
     * wait longer is denied with the reason, so a run never waits forever.
     * @default 300000 (five minutes)
     */
    maxDelayMs: z.number().int().positive().default(300_000),
  })
  .strict();
export type RateLimit = z.infer<typeof RateLimit>;

export const ToolEntry = z
  .object({
    op: Operation,
    /** Objects touched: a fixed count, or the length of an array argument. */
    objects: z.union([
      z.object({ count: z.number().int().min(0) }).strict(),
      z.object({ countOf: z.string().min(1) }).strict(),
    ]),
    domains: z.array(z.string().min(1)).min(1),
    /** Failure rate seen for this tool over the last 30 days, 0..1 (the risk score's fourth term, docs/design.md). */
    historicalFailure: z.number().min(0).max(1).default(0),
    /**
     * Shorthand for `rateLimit: { calls: N }` (per minute, delayed when exceeded); absent
     * with `rateLimit` absent means unlimited.
     */
    ratePerMinute: z.number().int().positive().optional(),
    /** The rate limit in full (see RateLimit); not together with `ratePerMinute`. */
    rateLimit: RateLimit.optional(),
    /** Argument checks of the rules reviewer (see ArgCheck). */
    checks: z.array(ArgCheck).optional(),
  })
  .strict()
  .refine((t) => t.ratePerMinute === undefined || t.rateLimit === undefined, {
    message: "give either `ratePerMinute` or `rateLimit`, not both",
  });
export type ToolEntry = z.infer<typeof ToolEntry>;

export const Rule = z
  .object({
    id: z
      .string()
      .regex(/^[a-z0-9][a-z0-9_-]*$/, "rule ids are lowercase letters, digits, '_' and '-'"),
    description: z.string().optional(),
    /** A CEL condition over `tool`, `args`, `op`, `domains`, `run` and `env`. */
    when: z.string().min(1),
    /** Raise the step to at least this tier. */
    tier: Tier.optional(),
    /** Refuse the step outright, with this reason. */
    deny: z.string().min(1).optional(),
    require: z
      .object({
        strategies: z.array(ReviewStrategy).optional(),
        human: HumanRequirement.optional(),
        reviewers: z.number().int().min(0).max(16).optional(),
      })
      .strict()
      .optional(),
  })
  .strict()
  .refine((r) => r.tier !== undefined || r.deny !== undefined || r.require !== undefined, {
    message: "a rule needs an effect: `tier:`, `deny:` or `require:`",
  });
export type Rule = z.infer<typeof Rule>;

export const Budgets = z
  .object({
    steps: z.number().int().positive().default(50),
    tokens: z.number().int().positive().default(200_000),
    costUsd: z.number().positive().default(5),
  })
  .strict();
export type Budgets = z.infer<typeof Budgets>;

/**
 * Bounds on what a step may carry (docs/security.md, "Bounded messages end to end").
 * Absent from a policy, the defaults apply (and the policy's digest is unchanged).
 */
export const Limits = z
  .object({
    /**
     * The largest step argument, in bytes of its canonical encoding, that may travel by
     * reference (its bytes in the payloads bucket). A larger one is denied by the router
     * before any review or effect. Arguments that fit a frame are always carried, so the
     * bound is at least MAX_FRAME_BYTES.
     * @default 4_194_304 (4 MiB)
     */
    maxArgumentBytes: z
      .number()
      .int()
      .min(MIN_ARGUMENT_BYTES_LIMIT)
      .max(MAX_ARGUMENT_BYTES_CEILING)
      .default(DEFAULT_MAX_ARGUMENT_BYTES),
  })
  .strict();
export type Limits = z.infer<typeof Limits>;

export const PolicyDocument = z
  .object({
    version: z.literal(1),
    environment: z.string().regex(/^[a-z0-9][a-z0-9_-]*$/),
    description: z.string().optional(),
    risk: z
      .object({
        weights: z
          .object({
            op: z.number().min(0),
            objects: z.number().min(0),
            crossDomain: z.number().min(0),
            historicalFailure: z.number().min(0),
          })
          .strict(),
        operations: z.record(Operation, z.number().min(0).max(1)),
        /** The objects term is min(1, objects / objectsSaturateAt). */
        objectsSaturateAt: z.number().positive().default(2),
        thresholds: z
          .object({ standard: z.number().min(0).max(1), full: z.number().min(0).max(1) })
          .strict(),
      })
      .strict()
      .refine((r) => r.thresholds.standard <= r.thresholds.full, {
        message: "thresholds.standard must not exceed thresholds.full",
        path: ["thresholds"],
      }),
    tiers: z.object({ light: TierParams, standard: TierParams, full: TierParams }).strict(),
    tools: z.record(z.string().min(1), ToolEntry),
    /** What an unknown tool is treated as: refused, or routed to the full tier. */
    unknownTools: z.enum(["deny", "full"]).default("deny"),
    rules: z.array(Rule).default([]),
    budgets: Budgets.default({ steps: 50, tokens: 200_000, costUsd: 5 }),
    /** Size bounds (see Limits); optional so that a policy without it keeps its digest. */
    limits: Limits.optional(),
    /**
     * One-way escalation mid-run: once a step of a run has failed verification, every later
     * proposal of that run (its retries and the steps after it) is at least this tier.
     */
    escalation: z
      .object({ afterFailure: Tier.default("standard") })
      .strict()
      .default({ afterFailure: "standard" }),
    /**
     * Alert thresholds for execution topology metrics: the values calibrated on the labelled
     * corpus (DEFAULT_TOPOLOGY_THRESHOLDS in shared/runstate/src/metrics.ts, docs/eval.md).
     * @default { entropyBits: 3.5, rollbackDensity: 0.75 }
     */
    metrics: z
      .object({
        entropyBits: z.number().positive().default(3.5),
        rollbackDensity: z.number().min(0).max(1).default(0.75),
      })
      .strict()
      .default({ entropyBits: 3.5, rollbackDensity: 0.75 }),
    /** How long trace messages stay valid after they are issued. @default 300_000 ms */
    messageTtlMs: z
      .number()
      .int()
      .positive()
      .default(5 * 60_000),
  })
  .strict();
export type PolicyDocument = z.infer<typeof PolicyDocument>;
export type PolicyInput = z.input<typeof PolicyDocument>;
