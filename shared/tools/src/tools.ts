import { z } from "zod";
import { ValidationError, type Check, type JsonObject, type JsonValue } from "@trias/protocol";
import { account, ToolRefusal, type Ledger, type LedgerState } from "./ledger.js";

export interface ToolRuntime {
  ledger: Ledger;
}

export interface EffectContext {
  /** `<run>:<step>:<attempt>`: the idempotency key of this effect. */
  effectId: string;
  attempt: number;
}

export interface CompensationOrder {
  tool: string;
  args: JsonObject;
}

export interface ToolDef {
  name: string;
  description: string;
  input: z.ZodType<Record<string, unknown>>;
  /** Apply the effect at most once per effect id. Throws ToolRefusal when the world says no. */
  run(rt: ToolRuntime, args: JsonObject, ctx: EffectContext): Promise<JsonValue>;
  /** The order that undoes this effect, or null when it cannot be undone (escalate instead). */
  compensate(args: JsonObject, result: JsonValue): CompensationOrder | null;
  /** Read-only checks of the world after the effect, run by the verifier. */
  verify(
    rt: ToolRuntime,
    args: JsonObject,
    result: JsonValue,
    ctx: EffectContext,
  ): Promise<Check[]>;
}

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
const Payouts = z
  .array(z.object({ account: Name, amount: Amount }).strict())
  .min(1)
  .max(100);
const BatchArgs = z.object({ payouts: Payouts, batch: z.string().min(1).max(64) }).strict();
const FlakyArgs = z
  .object({
    key: z.string().min(1).max(64),
    passFromAttempt: z.number().int().min(0).max(100),
    /** Before this attempt the postcondition cannot be read at all (its source is down). */
    readableFromAttempt: z.number().int().min(0).max(100).default(0),
  })
  .strict();

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function recorded(
  rt: ToolRuntime,
  result: JsonValue,
  ctx: EffectContext,
): Promise<{ state: LedgerState; checks: Check[] }> {
  const { state } = await rt.ledger.read();
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

const balance: ToolDef = {
  name: "ledger.balance",
  description: "Read one account's balance.",
  input: AccountArgs,
  async run(rt, args) {
    const { state } = await rt.ledger.read();
    const { account: name } = AccountArgs.parse(args);
    const a = account(state, name);
    return { account: name, balance: a.balance };
  },
  compensate: () => null,
  async verify(rt, args, result) {
    const { state } = await rt.ledger.read();
    const { account: name } = AccountArgs.parse(args);
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
};

const transfer: ToolDef = {
  name: "ledger.transfer",
  description: "Move an amount from one account to another.",
  input: TransferArgs,
  async run(rt, args, ctx) {
    const { from, to, amount } = TransferArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, (s) => {
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
    args: {
      from: args["to"] ?? "",
      to: args["from"] ?? "",
      amount: args["amount"] ?? 0,
      memo: "compensation",
    },
  }),
  async verify(rt, _args, result, ctx) {
    return (await recorded(rt, result, ctx)).checks;
  },
};

const refund: ToolDef = {
  name: "ledger.refund",
  description: "Refund an amount from the treasury to a customer account.",
  input: RefundArgs,
  async run(rt, args, ctx) {
    const { account: to, amount, reference } = RefundArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, (s) => {
      move(s, "treasury", to, amount);
      return { account: to, amount, balance: account(s, to).balance, reference };
    });
    return result;
  },
  compensate: (args) => ({
    tool: "ledger.transfer",
    args: {
      from: args["account"] ?? "",
      to: "treasury",
      amount: args["amount"] ?? 0,
      memo: "refund reversed",
    },
  }),
  async verify(rt, _args, result, ctx) {
    return (await recorded(rt, result, ctx)).checks;
  },
};

const closeAccount: ToolDef = {
  name: "ledger.close_account",
  description: "Close an account, sweeping its balance to the treasury. Irreversible.",
  input: AccountArgs,
  async run(rt, args, ctx) {
    const { account: name } = AccountArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, (s) => {
      const a = account(s, name);
      const swept = a.balance;
      if (name === "treasury") throw new ToolRefusal("the treasury cannot be closed");
      move(s, name, "treasury", swept);
      a.open = false;
      return { account: name, swept };
    });
    return result;
  },
  compensate: () => null,
  async verify(rt, args, result, ctx) {
    const { state, checks } = await recorded(rt, result, ctx);
    const a = state.accounts[AccountArgs.parse(args).account];
    return [
      ...checks,
      {
        name: "account closed",
        ok: a?.open === false,
        detail: a ? `open=${a.open}` : "account missing",
      },
    ];
  },
};

const batchPayout: ToolDef = {
  name: "ledger.batch_payout",
  description: "Pay several accounts from the treasury (and notify the bank).",
  input: BatchArgs,
  async run(rt, args, ctx) {
    const { payouts, batch } = BatchArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, (s) => {
      for (const p of payouts) move(s, "treasury", p.account, p.amount);
      return { batch, paid: payouts.length, total: payouts.reduce((n, p) => n + p.amount, 0) };
    });
    return result;
  },
  compensate: (args) => ({
    tool: "ledger.batch_reverse",
    args: { payouts: args["payouts"] ?? [], batch: args["batch"] ?? "" },
  }),
  async verify(rt, _args, result, ctx) {
    return (await recorded(rt, result, ctx)).checks;
  },
};

const batchReverse: ToolDef = {
  name: "ledger.batch_reverse",
  description: "Reverse a batch payout: each account pays its amount back to the treasury.",
  input: BatchArgs,
  async run(rt, args, ctx) {
    const { payouts, batch } = BatchArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, (s) => {
      for (const p of payouts) move(s, p.account, "treasury", p.amount);
      return { batch, reversed: payouts.length };
    });
    return result;
  },
  compensate: () => null,
  async verify(rt, _args, result, ctx) {
    return (await recorded(rt, result, ctx)).checks;
  },
};

/**
 * Test tools. `noop.*` do nothing (benchmarks measure governance, not the tool). `flaky.write`
 * records an effect whose postcondition fails until `passFromAttempt`, to drive recovery.
 */
const noop = (name: string, description: string): ToolDef => ({
  name,
  description,
  input: z.record(z.string(), z.json()),
  run: () => Promise.resolve({ ok: true }),
  compensate: (args) => (name === "noop.echo" ? null : { tool: "noop.echo", args }),
  verify: () => Promise.resolve([{ name: "noop", ok: true, detail: "nothing to check" }]),
});

const BlobArgs = z.object({ bytes: z.number().int().min(0).max(1_000_000) }).strict();
/**
 * A read that answers with `bytes` characters: results larger than a frame (which travel by
 * digest) and the verifier reading them back. Its check is that the whole result arrived.
 */
const blob: ToolDef = {
  name: "noop.blob",
  description: "Do nothing and answer with `bytes` characters (test: large results).",
  input: BlobArgs,
  run: (_rt, args) => Promise.resolve({ blob: "x".repeat(BlobArgs.parse(args).bytes) }),
  compensate: () => null,
  verify: (_rt, args, result) => {
    const want = BlobArgs.parse(args).bytes;
    const got = (result as { blob?: unknown } | null)?.blob;
    const ok = typeof got === "string" && got.length === want;
    return Promise.resolve([
      {
        name: "whole result",
        ok,
        detail: ok ? `${want} characters` : `expected ${want} characters`,
      },
    ]);
  },
};

const flaky: ToolDef = {
  name: "flaky.write",
  description:
    "Records an effect; its postcondition fails for attempts before passFromAttempt and cannot be read before readableFromAttempt.",
  input: FlakyArgs,
  async run(rt, args, ctx) {
    const { key } = FlakyArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, () => ({ key, attempt: ctx.attempt }));
    return result;
  },
  compensate: (args, result) => ({
    tool: "flaky.undo",
    args: {
      key: FlakyArgs.parse(args).key,
      attempt: (result as { attempt?: number } | null)?.attempt ?? 0,
    },
  }),
  async verify(rt, args, result, ctx) {
    const a = FlakyArgs.parse(args);
    if (ctx.attempt < a.readableFromAttempt)
      throw new Error(`downstream unreachable: cannot confirm attempt ${ctx.attempt}`);
    const { checks } = await recorded(rt, result, ctx);
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
};

const FlakyUndoArgs = z
  .object({ key: z.string().min(1).max(64), attempt: z.number().int().min(0) })
  .strict();
const flakyUndo: ToolDef = {
  name: "flaky.undo",
  description: "Records that a flaky.write effect was undone.",
  input: FlakyUndoArgs,
  async run(rt, args, ctx) {
    const { key, attempt } = FlakyUndoArgs.parse(args);
    const { result } = await rt.ledger.apply(ctx.effectId, () => ({ undone: key, attempt }));
    return result;
  },
  compensate: () => null,
  async verify(rt, _args, result, ctx) {
    return (await recorded(rt, result, ctx)).checks;
  },
};

export const TOOLS: ReadonlyMap<string, ToolDef> = new Map(
  [
    balance,
    transfer,
    refund,
    closeAccount,
    batchPayout,
    batchReverse,
    noop("noop.echo", "Do nothing (read)."),
    noop("noop.write", "Do nothing (write)."),
    noop("noop.batch", "Do nothing (batch)."),
    blob,
    flaky,
    flakyUndo,
  ].map((t) => [t.name, t]),
);

export function getTool(name: string): ToolDef {
  const t = TOOLS.get(name);
  if (!t)
    throw new ValidationError(
      "tool_unknown",
      `no tool named "${name}" in the tool pack (known: ${[...TOOLS.keys()].join(", ")})`,
    );
  return t;
}

/** Validate arguments against the tool's input schema; the error names each bad field. */
export function checkArgs(
  tool: ToolDef,
  args: JsonObject,
): { ok: true } | { ok: false; reason: string } {
  const r = tool.input.safeParse(args);
  return r.success
    ? { ok: true }
    : { ok: false, reason: z.prettifyError(r.error).replace(/\n/g, "; ") };
}
