import { decideTier, parsePolicy, type LoadedPolicy, type StepFacts } from "@trias/policy";

export interface PolicyBenchResult {
  name: string;
  p50us: number;
  p99us: number;
  perSecond: number;
}

const BASE = `
version: 1
environment: bench
risk:
  weights: { op: 0.35, objects: 0.25, crossDomain: 0.25, historicalFailure: 0.15 }
  operations: { read: 0, write: 0.3, batch_write: 0.7, delete: 1.0, irreversible: 1.0 }
  thresholds: { standard: 0.25, full: 0.60 }
tiers:
  light: { reviewers: 0, strategies: [] }
  standard: { reviewers: 1, strategies: [rules] }
  full: { reviewers: 2, strategies: [rules, llm] }
tools:
  ledger.balance: { op: read, objects: { count: 1 }, domains: [ledger] }
  ledger.transfer: { op: write, objects: { count: 2 }, domains: [ledger] }
  ledger.refund: { op: write, objects: { count: 1 }, domains: [ledger] }
  ledger.close_account: { op: delete, objects: { count: 1 }, domains: [ledger] }
  ledger.batch_payout: { op: batch_write, objects: { countOf: payouts }, domains: [ledger, bank] }
  noop.echo: { op: read, objects: { count: 0 }, domains: [test] }
`;

const TOOLS = [
  "ledger.balance",
  "ledger.transfer",
  "ledger.refund",
  "ledger.close_account",
  "ledger.batch_payout",
  "noop.echo",
];

/**
 * Rules in the shapes real policies use: per-tool amount limits, op and domain checks,
 * batch sizes, run context. `sameTool` puts every rule on ledger.transfer, the worst case
 * for per-tool prefiltering: each of them has to be evaluated for a transfer.
 */
function rules(n: number, sameTool: boolean): string {
  const out: string[] = ["rules:"];
  for (let i = 0; i < n; i++) {
    const tool = sameTool ? "ledger.transfer" : (TOOLS[i % TOOLS.length] ?? "noop.echo");
    const shapes = [
      `tool == "${tool}" && args.amount > ${1000 + i * 10}.0`,
      `tool == "${tool}" && has(args.memo) && args.memo.startsWith("urgent-${i}")`,
      `tool == "${tool}" && (op in ["delete", "irreversible"] || size(domains) > ${1 + (i % 3)})`,
      `tool == "${tool}" && has(args.payouts) && size(args.payouts) > ${10 + i}`,
      `tool == "${tool}" && run.attempt > ${2 + (i % 4)}`,
    ];
    const when = shapes[i % shapes.length] ?? "false";
    out.push(
      `  - id: r${i}`,
      `    when: '${when}'`,
      `    ${i % 7 === 0 ? "require: { human: true }" : "tier: standard"}`,
    );
  }
  return out.join("\n");
}

function policyWith(n: number, sameTool: boolean): LoadedPolicy {
  return parsePolicy(BASE + (n > 0 ? rules(n, sameTool) : ""), `<bench ${n} rules>`);
}

const STEP: StepFacts = {
  tool: "ledger.transfer",
  args: { from: "alice", to: "bob", amount: 1500, memo: "rent" },
  run: { id: "bench-run", step: 3, attempt: 1 },
};

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))] ?? 0;
}

let sink = 0;

function measure(
  name: string,
  policy: LoadedPolicy,
  steps: readonly StepFacts[],
): PolicyBenchResult {
  const samples = 50_000;
  const warmup = 20_000;
  for (let i = 0; i < warmup; i++) sink += decideTier(policy, steps[i % steps.length]!).score;
  // Per-call latency: timer resolution is tens of nanoseconds, far below what is measured.
  const lat = new Float64Array(samples);
  for (let i = 0; i < samples; i++) {
    const s = steps[i % steps.length]!;
    const t0 = process.hrtime.bigint();
    const d = decideTier(policy, s);
    const t1 = process.hrtime.bigint();
    sink += d.score;
    lat[i] = Number(t1 - t0) / 1000;
  }
  lat.sort();
  // Throughput without the per-call timer overhead.
  const n = 200_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink += decideTier(policy, steps[i % steps.length]!).score;
  const ns = Number(process.hrtime.bigint() - t0);
  return {
    name,
    p50us: Math.round(percentile(lat, 0.5) * 1000) / 1000,
    p99us: Math.round(percentile(lat, 0.99) * 1000) / 1000,
    perSecond: Math.round(n / (ns / 1e9)),
  };
}

/** decideTier latency (p50, p99) and decisions per second with 1 and with 100 rules. */
export async function benchPolicy(): Promise<PolicyBenchResult[]> {
  const mixedSteps: StepFacts[] = TOOLS.map((tool, i) => ({
    tool,
    // Every key some rule reads is present: the bench measures decisions, not the
    // fail-closed path (an evaluation error costs microseconds: the engine formats it).
    args: {
      account: "alice",
      amount: 500 + i * 700,
      memo: "x",
      payouts: [
        { account: "a", amount: 1 },
        { account: "b", amount: 2 },
      ],
    },
    run: { id: "bench-run", step: i, attempt: 1 },
  }));
  const results = [
    measure("decideTier, 1 rule", policyWith(1, true), [STEP]),
    measure("decideTier, 100 rules over 6 tools", policyWith(100, false), [STEP]),
    measure("decideTier, 100 rules over 6 tools, mixed steps", policyWith(100, false), mixedSteps),
    measure("decideTier, 100 rules all on the step's tool", policyWith(100, true), [STEP]),
  ];
  if (sink === Number.MIN_VALUE) console.log(sink);
  return Promise.resolve(results);
}
