import { z } from "zod";
import { canonicalBytes, sha256Hex, type Check, type JsonValue } from "@trias/protocol";
import { account, Ledger, LEDGER_BUCKET, type LedgerState } from "./ledger.js";
import {
  defineTool,
  defineToolPack,
  ToolRefusal,
  type PackHost,
  type ToolContext,
} from "./pack.js";

/** What the ledger tools share in a process: the ledger bucket (read-only for a verifier). */
export interface LedgerResources {
  ledger: Ledger;
}

type Ctx = ToolContext<LedgerResources>;

const Name = z
  .string()
  .regex(/^[a-z][a-z0-9_-]{0,31}$/, "account names are lowercase, up to 32 characters");
const Amount = z.number().positive().finite().max(1e9);
const AccountArgs = z.object({ account: Name }).strict();
const TransferArgs = z
  .object({ from: Name, to: Name, amount: Amount, memo: z.string().max(200).optional() })
  .strict()
  .refine((a) => a.from !== a.to, "from and to must differ");
const RefundArgs = z
  .object({ account: Name, amount: Amount, reference: z.string().min(1).max(64) })
  .strict();
/** The most one batch may move: a bound of the pack, whatever a policy allows. */
const MAX_BATCH_TOTAL = 50_000;
const Payouts = z
  .array(z.object({ account: Name, amount: Amount }).strict())
  .min(1)
  .max(100)
  .refine(
    (ps) => new Set(ps.map((p) => p.account)).size === ps.length,
    "an account appears twice in the batch",
  )
  .refine(
    (ps) => ps.reduce((n, p) => n + p.amount, 0) <= MAX_BATCH_TOTAL,
    `a batch moves at most ${MAX_BATCH_TOTAL} in all`,
  );
const BatchArgs = z.object({ payouts: Payouts, batch: z.string().min(1).max(64) }).strict();
const FlakyArgs = z
  .object({
    key: z.string().min(1).max(64),
    passFromAttempt: z.number().int().min(0).max(100),
    /** Before this attempt the postcondition cannot be read at all (its source is down). */
    readableFromAttempt: z.number().int().min(0).max(100).default(0),
  })
  .strict();
const FlakyUndoArgs = z
  .object({ key: z.string().min(1).max(64), attempt: z.number().int().min(0) })
  .strict();

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function recorded(
  result: JsonValue,
  ctx: Ctx,
): Promise<{ state: LedgerState; checks: Check[] }> {
  const { state } = await ctx.resources.ledger.read();
  const prior = state.applied[ctx.effectId];
  const negative = Object.entries(state.accounts).filter(([, a]) => a.balance < 0);
  return {
    state,
    checks: [
      {
        name: "effect recorded",
        ok: prior !== undefined,
        detail:
          prior !== undefined
            ? `ledger records ${ctx.effectId}`
            : `ledger has no record of ${ctx.effectId}`,
      },
      {
        name: "result matches ledger",
        ok: sameJson(prior, result),
        detail: sameJson(prior, result)
          ? "reported result equals the recorded one"
          : "reported result differs from the ledger's record",
      },
      {
        name: "no negative balance",
        ok: negative.length === 0,
        detail:
          negative.length === 0
            ? "all balances >= 0"
            : `negative: ${negative.map(([n]) => n).join(", ")}`,
      },
    ],
  };
}

function move(s: LedgerState, from: string, to: string, amount: number): void {
  const a = account(s, from);
  const b = account(s, to);
  if (a.balance < amount)
    throw new ToolRefusal(`insufficient funds: ${from} has ${a.balance}, needs ${amount}`);
  a.balance -= amount;
  b.balance += amount;
}

const checksOf = async (result: JsonValue, ctx: Ctx) => (await recorded(result, ctx)).checks;

const balance = defineTool({
  name: "ledger.balance",
  description: "Read one account's balance.",
  input: AccountArgs,
  op: "read",
  domains: ["ledger"],
  objects: { count: 1 },
  idempotent: true,
  async run({ account: name }, ctx: Ctx) {
    const { state } = await ctx.resources.ledger.read();
    const a = account(state, name);
    return { account: name, balance: a.balance };
  },
  async verify({ account: name }, result, ctx: Ctx) {
    const { state } = await ctx.resources.ledger.read();
    const exists = state.accounts[name] !== undefined;
    const r = result as { account?: unknown; balance?: unknown } | null;
    return [
      {
        name: "account exists",
        ok: exists,
        detail: exists ? `${name} exists` : `${name} does not exist`,
      },
      {
        name: "balance reported",
        ok: typeof r?.balance === "number" && r.account === name,
        detail: `result ${JSON.stringify(result)}`,
      },
    ];
  },
});

const transfer = defineTool({
  name: "ledger.transfer",
  description: "Move an amount from one account to another.",
  input: TransferArgs,
  op: "write",
  domains: ["ledger"],
  objects: { count: 2 },
  idempotent: true,
  async run({ from, to, amount }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, (s) => {
      move(s, from, to, amount);
      return {
        from,
        to,
        amount,
        fromBalance: account(s, from).balance,
        toBalance: account(s, to).balance,
      };
    });
    return result;
  },
  compensate: (args) => ({
    tool: "ledger.transfer",
    args: { from: args.to, to: args.from, amount: args.amount, memo: "compensation" },
  }),
  verify: (_args, result, ctx: Ctx) => checksOf(result, ctx),
});

const refund = defineTool({
  name: "ledger.refund",
  description: "Refund an amount from the treasury to a customer account.",
  input: RefundArgs,
  op: "write",
  domains: ["ledger"],
  objects: { count: 1 },
  idempotent: true,
  async run({ account: to, amount, reference }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, (s) => {
      move(s, "treasury", to, amount);
      return { account: to, amount, balance: account(s, to).balance, reference };
    });
    return result;
  },
  compensate: (args) => ({
    tool: "ledger.transfer",
    args: { from: args.account, to: "treasury", amount: args.amount, memo: "refund reversed" },
  }),
  verify: (_args, result, ctx: Ctx) => checksOf(result, ctx),
});

const closeAccount = defineTool({
  name: "ledger.close_account",
  description: "Close an account, sweeping its balance to the treasury. Irreversible.",
  input: AccountArgs,
  op: "delete",
  domains: ["ledger"],
  objects: { count: 1 },
  idempotent: true,
  async run({ account: name }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, (s) => {
      const a = account(s, name);
      const swept = a.balance;
      if (name === "treasury") throw new ToolRefusal("the treasury cannot be closed");
      move(s, name, "treasury", swept);
      a.open = false;
      return { account: name, swept };
    });
    return result;
  },
  async verify({ account: name }, result, ctx: Ctx) {
    const { state, checks } = await recorded(result, ctx);
    const a = state.accounts[name];
    return [
      ...checks,
      {
        name: "account closed",
        ok: a?.open === false,
        detail: a ? `open=${a.open}` : "account missing",
      },
    ];
  },
});

const batchPayout = defineTool({
  name: "ledger.batch_payout",
  description: "Pay several accounts from the treasury (and notify the bank).",
  input: BatchArgs,
  op: "batch_write",
  domains: ["ledger", "bank"],
  objects: { countOf: "payouts" },
  idempotent: true,
  async run({ payouts, batch }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, (s) => {
      for (const p of payouts) move(s, "treasury", p.account, p.amount);
      return { batch, paid: payouts.length, total: payouts.reduce((n, p) => n + p.amount, 0) };
    });
    return result;
  },
  compensate: (args) => ({
    tool: "ledger.batch_reverse",
    args: { payouts: args.payouts, batch: args.batch },
  }),
  verify: (_args, result, ctx: Ctx) => checksOf(result, ctx),
});

const batchReverse = defineTool({
  name: "ledger.batch_reverse",
  description: "Reverse a batch payout: each account pays its amount back to the treasury.",
  input: BatchArgs,
  op: "batch_write",
  domains: ["ledger", "bank"],
  objects: { countOf: "payouts" },
  idempotent: true,
  async run({ payouts, batch }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, (s) => {
      for (const p of payouts) move(s, p.account, "treasury", p.amount);
      return { batch, reversed: payouts.length };
    });
    return result;
  },
  verify: (_args, result, ctx: Ctx) => checksOf(result, ctx),
});

async function openLedger(host: PackHost): Promise<LedgerResources> {
  return { ledger: new Ledger(await host.kv(LEDGER_BUCKET)) };
}

/** The demo ledger (a JetStream KV bucket): one pack among others. */
export const ledgerPack = defineToolPack<LedgerResources>({
  name: "ledger",
  tools: [balance, transfer, refund, closeAccount, batchPayout, batchReverse],
  open: openLedger,
});

/**
 * Test tools. `noop.*` do nothing (benchmarks measure governance, not the tool). `flaky.write`
 * records an effect whose postcondition fails until `passFromAttempt`, to drive recovery.
 */
const noop = (
  name: string,
  description: string,
  op: "read" | "write" | "batch_write",
  objects: number,
  domains: string[],
) =>
  defineTool({
    name,
    description,
    input: z.record(z.string(), z.json()),
    op,
    domains,
    objects: { count: objects },
    idempotent: true,
    // What it ran on, by digest: a test can tell the tool got the very bytes that were bound.
    run: (args) => {
      const bytes = canonicalBytes(args);
      return Promise.resolve({ ok: true, sha256: sha256Hex(bytes), bytes: bytes.length });
    },
    compensate: (args) => (name === "noop.echo" ? null : { tool: "noop.echo", args }),
    verify: () => Promise.resolve([{ name: "noop", ok: true, detail: "nothing to check" }]),
  });

const BlobArgs = z.object({ bytes: z.number().int().min(0).max(1_000_000) }).strict();
/**
 * A read that answers with `bytes` characters: results larger than a frame (which travel by
 * digest) and the verifier reading them back. Its check is that the whole result arrived.
 */
const blob = defineTool({
  name: "noop.blob",
  description: "Do nothing and answer with `bytes` characters (test: large results).",
  input: BlobArgs,
  op: "read",
  domains: ["test"],
  objects: { count: 0 },
  idempotent: true,
  run: ({ bytes }) => Promise.resolve({ blob: "x".repeat(bytes) }),
  verify: ({ bytes }, result) => {
    const got = (result as { blob?: unknown } | null)?.blob;
    const ok = typeof got === "string" && got.length === bytes;
    return Promise.resolve([
      {
        name: "whole result",
        ok,
        detail: ok ? `${bytes} characters` : `expected ${bytes} characters`,
      },
    ]);
  },
});

const flaky = defineTool({
  name: "flaky.write",
  description:
    "Records an effect; its postcondition fails for attempts before passFromAttempt and cannot be read before readableFromAttempt.",
  input: FlakyArgs,
  op: "write",
  domains: ["test"],
  objects: { count: 1 },
  idempotent: true,
  async run({ key }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, () => ({
      key,
      attempt: ctx.attempt,
    }));
    return result;
  },
  compensate: (args, result) => ({
    tool: "flaky.undo",
    args: { key: args.key, attempt: (result as { attempt?: number } | null)?.attempt ?? 0 },
  }),
  async verify(a, result, ctx: Ctx) {
    if (ctx.attempt < a.readableFromAttempt)
      throw new Error(`downstream unreachable: cannot confirm attempt ${ctx.attempt}`);
    const { checks } = await recorded(result, ctx);
    const ok = ctx.attempt >= a.passFromAttempt;
    return [
      ...checks,
      {
        name: "downstream confirmed",
        ok,
        detail: ok ? "confirmed" : `not confirmed at attempt ${ctx.attempt}`,
      },
    ];
  },
});

const flakyUndo = defineTool({
  name: "flaky.undo",
  description: "Records that a flaky.write effect was undone.",
  input: FlakyUndoArgs,
  op: "write",
  domains: ["test"],
  objects: { count: 1 },
  idempotent: true,
  async run({ key, attempt }, ctx: Ctx) {
    const { result } = await ctx.resources.ledger.apply(ctx.effectId, () => ({
      undone: key,
      attempt,
    }));
    return result;
  },
  verify: (_args, result, ctx: Ctx) => checksOf(result, ctx),
});

/** Tools for tests and benchmarks (no-ops and a flaky write); shipped, named in the policies. */
export const testPack = defineToolPack<LedgerResources>({
  name: "test",
  tools: [
    noop("noop.echo", "Do nothing (read).", "read", 0, ["test"]),
    noop("noop.write", "Do nothing (write).", "write", 2, ["test"]),
    noop("noop.batch", "Do nothing (batch).", "batch_write", 4, ["test", "bank"]),
    blob,
    flaky,
    flakyUndo,
  ],
  open: openLedger,
});
