import { describe, expect, it } from "vitest";
import {
  argsRefOf,
  canonicalBytes,
  INLINE_ARGUMENT_BYTES,
  type Compensation,
  type MessageOf,
} from "@trias/protocol";
import { checkCompensationOrder, type DeclaredUndo } from "./compensation.js";

// The one compensation-order rule, as the executor applies it before running an undo and the
// verifier when it audits one: data in, decision out.
const D = "d".repeat(64);

function executed(o: Partial<MessageOf<"step_executed">["body"]> = {}, run = "r1", step = 2) {
  return {
    kind: "step_executed",
    run,
    step,
    attempt: 0,
    body: {
      digest: D,
      tool: "ledger.transfer",
      args: { from: "alice", to: "bob", amount: 5 },
      outcome: "ok",
      compensationOf: null,
      ...o,
    },
  } as unknown as MessageOf<"step_executed">;
}

const undo: DeclaredUndo = {
  tool: "ledger.transfer",
  args: { from: "bob", to: "alice", amount: 5, memo: "compensation" },
};
/** An undo whose arguments are too large for a frame: an order names them by reference. */
const bigUndo: DeclaredUndo = {
  tool: "noop.echo",
  args: { blob: "x".repeat(INLINE_ARGUMENT_BYTES) },
};
const bigRef = argsRefOf(canonicalBytes(bigUndo.args));

const order = (c: Partial<Compensation> | null = {}, run = "r1") => ({
  run,
  compensation: c === null ? null : { step: 2, of: D, tool: undo.tool, args: undo.args, ...c },
});

const CASES: [
  string,
  ReturnType<typeof order>,
  MessageOf<"step_executed"> | null,
  DeclaredUndo | null,
  boolean,
][] = [
  ["the declared undo of the effect is accepted", order(), executed(), undo, true],
  [
    "the same arguments in another key order are the same arguments",
    order({ args: { memo: "compensation", amount: 5, to: "alice", from: "bob" } }),
    executed(),
    undo,
    true,
  ],
  [
    "an order naming large undo arguments by reference",
    order({ tool: "noop.echo", args: bigRef }),
    executed(),
    bigUndo,
    true,
  ],
  [
    "a reference to other bytes than the declared undo's",
    order({ tool: "noop.echo", args: argsRefOf(canonicalBytes({ blob: "y" })) }),
    executed(),
    bigUndo,
    false,
  ],
  ["an order naming no compensation", order(null), executed(), undo, false],
  ["an order without the effect it undoes", order(), null, undo, false],
  ["an effect of another run", order({}, "r2"), executed(), undo, false],
  ["an effect of another digest", order({ of: "e".repeat(64) }), executed(), undo, false],
  ["an effect of another step", order({ step: 3 }), executed(), undo, false],
  [
    "an effect that did not happen (the tool refused)",
    order(),
    executed({ outcome: "error" }),
    undo,
    false,
  ],
  ["a compensation is not itself undone", order(), executed({ compensationOf: D }), undo, false],
  ["an effect its tool declares no undo for", order(), executed(), null, false],
  [
    "another tool than the declared undo",
    order({ tool: "ledger.refund" }),
    executed(),
    undo,
    false,
  ],
  [
    "other arguments than the declared undo (money to someone else)",
    order({ args: { ...undo.args, to: "mallory" } }),
    executed(),
    undo,
    false,
  ],
  [
    "a number where the undo has the same number as text",
    order({ args: { ...undo.args, amount: "5" } }),
    executed(),
    undo,
    false,
  ],
];

describe("compensation orders (pure)", () => {
  it.each(CASES)("compensation - %s", (_name, o, original, declared, ok) => {
    const r = checkCompensationOrder(o, original, declared);
    expect(r.ok).toBe(ok);
    if (!r.ok) {
      expect(r.code).toBe("scope_denied");
      expect(r.reason.length).toBeGreaterThan(10);
    }
  });
});
