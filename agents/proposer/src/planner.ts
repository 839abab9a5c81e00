import { z } from "zod";
import {
  isSealed,
  SUBJECT_ID,
  ValidationError,
  type JsonObject,
  type TaskSubmitted,
} from "@trias/protocol";
import { kycRisk } from "@trias/tools";

export interface PlannedStep {
  tool: string;
  args: JsonObject;
  rationale: string;
  expected: string;
}

const Account = z.string().min(1).max(32);
const Amount = z.number().positive();

/**
 * The deterministic planner: each program turns its input into a fixed list of typed tool
 * calls. It never looks at the ledger or anything else: same task, same plan.
 */
const PROGRAMS: Record<string, { input: z.ZodType; plan: (input: never) => PlannedStep[] }> = {
  "balance-check": {
    input: z.object({ account: Account }),
    plan: (i: { account: string }) => [
      {
        tool: "ledger.balance",
        args: { account: i.account },
        rationale: `report ${i.account}'s balance`,
        expected: `the current balance of ${i.account}`,
      },
    ],
  },
  transfer: {
    input: z.object({
      from: Account,
      to: Account,
      amount: Amount,
      memo: z.string().max(200).optional(),
    }),
    plan: (i: { from: string; to: string; amount: number; memo?: string }) => [
      {
        tool: "ledger.balance",
        args: { account: i.from },
        rationale: `check ${i.from} can cover ${i.amount}`,
        expected: `${i.from}'s balance`,
      },
      {
        tool: "ledger.transfer",
        args: { from: i.from, to: i.to, amount: i.amount, ...(i.memo ? { memo: i.memo } : {}) },
        rationale: `move ${i.amount} from ${i.from} to ${i.to} as asked`,
        expected: `${i.from} decreases and ${i.to} increases by ${i.amount}`,
      },
    ],
  },
  refund: {
    input: z.object({ account: Account, amount: Amount, reference: z.string().min(1).max(64) }),
    plan: (i: { account: string; amount: number; reference: string }) => [
      {
        tool: "ledger.refund",
        args: { account: i.account, amount: i.amount, reference: i.reference },
        rationale: `refund order ${i.reference}`,
        expected: `${i.account} increases by ${i.amount}`,
      },
    ],
  },
  payout: {
    input: z.object({
      batch: z.string().min(1).max(64),
      payouts: z.array(z.object({ account: Account, amount: Amount })).min(1),
    }),
    plan: (i: { batch: string; payouts: { account: string; amount: number }[] }) => [
      {
        tool: "ledger.balance",
        args: { account: "treasury" },
        rationale: "check the treasury covers the batch",
        expected: "the treasury balance",
      },
      {
        tool: "ledger.batch_payout",
        args: { batch: i.batch, payouts: i.payouts },
        rationale: `pay batch ${i.batch} to ${i.payouts.length} accounts`,
        expected: `each account increases by its amount; the treasury decreases by the total`,
      },
    ],
  },
  "close-account": {
    input: z.object({ account: Account }),
    plan: (i: { account: string }) => [
      {
        tool: "ledger.balance",
        args: { account: i.account },
        rationale: `see what remains in ${i.account}`,
        expected: `${i.account}'s balance`,
      },
      {
        tool: "ledger.close_account",
        args: { account: i.account },
        rationale: `close ${i.account} as asked`,
        expected: `${i.account} is closed, its balance swept to the treasury`,
      },
    ],
  },
  /** Governance without a tool cost: `noop.echo` (light), `noop.write` (standard), `noop.batch` (full). */
  noop: {
    input: z.object({
      tier: z.enum(["light", "standard", "full"]),
      steps: z.number().int().min(1).max(100).default(1),
    }),
    plan: (i: { tier: "light" | "standard" | "full"; steps: number }) =>
      Array.from({ length: i.steps }, (_, n) => ({
        tool:
          i.tier === "light" ? "noop.echo" : i.tier === "standard" ? "noop.write" : "noop.batch",
        args: { n },
        rationale: `no-op step ${n}`,
        expected: "nothing changes",
      })),
  },
  /**
   * KYC onboarding (docs/privacy.md). Personal fields arrive sealed by the console; a clear
   * one is refused here so that it never reaches a proposal. The risk the router routes
   * `kyc.open_account` on is the pack's own rule over the declared facts; `kyc.rate_risk`
   * rechecks it against the lists before the account is opened.
   */
  kyc: {
    input: z.object({
      subject: z.string().regex(SUBJECT_ID),
      country: z.string().regex(/^[A-Z]{2}$/),
      monthlyVolume: z.number().nonnegative(),
      pep: z.boolean().default(false),
      personal: z.object({
        name: z.string().refine(isSealed, "must be sealed: submit with `trias submit kyc`"),
        dob: z.string().refine(isSealed, "must be sealed: submit with `trias submit kyc`"),
        email: z.string().refine(isSealed, "must be sealed: submit with `trias submit kyc`"),
        document: z.string().refine(isSealed, "must be sealed: submit with `trias submit kyc`"),
      }),
    }),
    plan: (i: {
      subject: string;
      country: string;
      monthlyVolume: number;
      pep: boolean;
      personal: { name: string; dob: string; email: string; document: string };
    }) => {
      const s = i.subject;
      const p = i.personal;
      const risk = kycRisk(i);
      return [
        {
          tool: "kyc.collect_documents",
          args: { subject: s, document: p.document, dob: p.dob },
          rationale: `file ${s}'s identity document`,
          expected: "the KYC file holds the document",
        },
        {
          tool: "kyc.check_identity",
          args: { subject: s, name: p.name, document: p.document, dob: p.dob },
          rationale: `check ${s}'s identity`,
          expected: "identity verified",
        },
        {
          tool: "kyc.screen",
          args: { subject: s, name: p.name },
          rationale: `screen ${s} against the sanctions and PEP lists`,
          expected: "no sanctions match",
        },
        {
          tool: "kyc.rate_risk",
          args: {
            subject: s,
            name: p.name,
            country: i.country,
            monthlyVolume: i.monthlyVolume,
            pep: i.pep,
            risk,
          },
          rationale: `confirm ${s} is ${risk} risk`,
          expected: `risk at most ${risk}`,
        },
        {
          tool: "kyc.open_account",
          args: { subject: s, risk },
          rationale: `open ${s}'s account at ${risk} risk`,
          expected: "the account is open",
        },
        {
          tool: "kyc.notify",
          args: { subject: s, email: p.email, template: "welcome" },
          rationale: `welcome ${s}`,
          expected: "a welcome notice is queued",
        },
      ];
    },
  },
  /** Explicit steps, for operators and tests: the plan is exactly what was given. */
  steps: {
    input: z.object({
      steps: z
        .array(
          z.object({
            tool: z.string().min(1),
            args: z.record(z.string(), z.json()),
            rationale: z.string().default("as given"),
            expected: z.string().default("as given"),
          }),
        )
        .min(1)
        .max(100),
    }),
    plan: (i: { steps: PlannedStep[] }) => i.steps,
  },
};

export const PROGRAM_NAMES = Object.keys(PROGRAMS);

export function planTask(task: TaskSubmitted): PlannedStep[] {
  const program = PROGRAMS[task.program];
  if (!program) {
    throw new ValidationError(
      "schema_invalid",
      `unknown program "${task.program}": known programs are ${PROGRAM_NAMES.join(", ")}`,
    );
  }
  const r = program.input.safeParse(task.input);
  if (!r.success) {
    throw new ValidationError(
      "schema_invalid",
      `input for program "${task.program}" is invalid: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
    );
  }
  return program.plan(r.data as never);
}
