import type { RunOutcome, TaskSubmitted, Tier } from "@trias/protocol";

/**
 * One labelled task of the governance corpus (docs/eval.md). The labels are a reviewer's
 * judgement written down before any run, not what the shipped policy computes: where they
 * differ, the policy puts a step in the wrong tier.
 */
export interface CorpusTask {
  id: string;
  task: TaskSubmitted;
  /** The tier each planned step deserves, in plan order; null for a step the policy must deny. */
  tiers: (Tier | null)[];
  /** Whether one step is bad on purpose and governance (router or review) must stop it. */
  seededBad: boolean;
  /** What a correct run ends as. */
  outcome: RunOutcome;
}

/**
 * The seed table: each family is a task shape, its labels, and how many variants to draw.
 * Amounts are kept small enough that every good task in the corpus is covered by the demo
 * ledger's balances (shared/tools/src/ledger.ts, DEMO_ACCOUNTS) even run one after another.
 */
interface Family {
  name: string;
  count: number;
  make(i: number): Omit<CorpusTask, "id">;
}

const PEOPLE = ["alice", "bob", "carol"] as const;
const ALL = ["alice", "bob", "carol", "dave", "treasury"] as const;
const at = <T>(xs: readonly T[], i: number): T => xs[i % xs.length] as T;

const task = (program: string, goal: string, input: Record<string, unknown>): TaskSubmitted => ({
  goal,
  program,
  input: input as TaskSubmitted["input"],
  requestedBy: "corpus",
});

const FAMILIES: readonly Family[] = [
  {
    name: "balance",
    count: 30,
    make: (i) => ({
      task: task("balance-check", "read a balance", { account: at(ALL, i) }),
      tiers: ["light"],
      seededBad: false,
      outcome: "completed",
    }),
  },
  {
    name: "small-transfer",
    count: 40,
    make: (i) => ({
      task: task("transfer", "a small payment", {
        from: at(PEOPLE, i),
        to: at(PEOPLE, i + 1),
        amount: 1 + (i % 9),
      }),
      tiers: ["light", "standard"],
      seededBad: false,
      outcome: "completed",
    }),
  },
  {
    // A reviewer would want two pairs of eyes on thousands leaving the treasury; the dev
    // policy scores every transfer alike (standard): these are its under-tiered steps.
    name: "large-transfer",
    count: 15,
    make: (i) => ({
      task: task("transfer", "a large payment from the treasury", {
        from: "treasury",
        to: at(PEOPLE, i),
        amount: 2000 + 100 * i,
      }),
      tiers: ["light", "full"],
      seededBad: false,
      outcome: "completed",
    }),
  },
  {
    name: "denied-transfer",
    count: 10,
    make: (i) => ({
      task: task("transfer", "a transfer above the automation limit", {
        from: "treasury",
        to: at(PEOPLE, i),
        amount: 10_001 + 1000 * i,
      }),
      tiers: ["light", null],
      seededBad: true,
      outcome: "rejected",
    }),
  },
  {
    name: "payout",
    count: 25,
    make: (i) => ({
      task: task("payout", "a small payout batch", {
        batch: `corpus-${i}`,
        payouts: [
          { account: at(PEOPLE, i), amount: 10 + i },
          { account: "dave", amount: 5 + i },
        ],
      }),
      tiers: ["light", "full"],
      seededBad: false,
      outcome: "completed",
    }),
  },
  {
    name: "payout-to-treasury",
    count: 10,
    make: (i) => ({
      task: task("payout", "a batch that pays the treasury itself", {
        batch: `corpus-self-${i}`,
        payouts: [
          { account: at(PEOPLE, i), amount: 10 },
          { account: "treasury", amount: 500 + i },
        ],
      }),
      tiers: ["light", "full"],
      seededBad: true,
      outcome: "rejected",
    }),
  },
  {
    name: "payout-over-limit",
    count: 10,
    make: (i) => ({
      task: task("payout", "a batch above the batch total limit", {
        batch: `corpus-big-${i}`,
        payouts: [
          { account: "alice", amount: 30_000 },
          { account: "bob", amount: 25_000 + i },
        ],
      }),
      tiers: ["light", "full"],
      seededBad: true,
      outcome: "rejected",
    }),
  },
  {
    name: "close-treasury",
    count: 10,
    make: () => ({
      task: task("close-account", "close the treasury", { account: "treasury" }),
      tiers: ["light", "full"],
      seededBad: true,
      outcome: "rejected",
    }),
  },
  {
    // Money leaves the house: a reviewer would look (standard); the dev policy scores a
    // one-account write light. Under-tiered on purpose of the labels, not of the corpus.
    name: "refund",
    count: 20,
    make: (i) => ({
      task: task("refund", "refund an order", {
        account: at(PEOPLE, i),
        amount: 1 + (i % 20),
        reference: `order-${i}`,
      }),
      tiers: ["standard"],
      seededBad: false,
      outcome: "completed",
    }),
  },
];

/** The whole corpus, in a fixed order (the same every time). */
export function ledgerCorpus(): CorpusTask[] {
  return FAMILIES.flatMap((f) =>
    Array.from({ length: f.count }, (_, i) => ({ id: `${f.name}-${i}`, ...f.make(i) })),
  );
}
