import { describe, expect, it } from "vitest";
import {
  admitCall,
  decideRate,
  rateLimitOf,
  RateLimit,
  ToolEntry,
  type RateDecision,
} from "./index.js";

const limit = (o: Partial<RateLimit> = {}): RateLimit => RateLimit.parse({ calls: 2, ...o });

// Two calls per 60 s window unless the row says otherwise; `calls` are accepted call times.
const rows: {
  name: string;
  limit: RateLimit;
  calls: number[];
  now: number;
  proposedAt?: number;
  want: RateDecision["type"];
  ms?: number;
  reason?: RegExp;
}[] = [
  { name: "room in the window", limit: limit(), calls: [1_000], now: 2_000, want: "assign" },
  { name: "no calls yet", limit: limit(), calls: [], now: 0, want: "assign" },
  {
    name: "full: delayed until the oldest call leaves the window",
    limit: limit(),
    calls: [1_000, 2_000],
    now: 3_000,
    want: "delay",
    ms: 58_000,
    reason: /allows 2 call\(s\) per 60 s in test, 2 in the window; retry in 58 s/,
  },
  {
    name: "a call exactly one window old has left it",
    limit: limit(),
    calls: [1_000, 2_000],
    now: 61_000,
    want: "assign",
  },
  {
    name: "a clock that went back: calls after now count, the wait is for the later one",
    limit: limit(),
    calls: [1_000, 5_000, 9_000],
    now: 4_000,
    want: "delay",
    ms: 61_000,
  },
  {
    name: "onExceed deny refuses with the retry time",
    limit: limit({ onExceed: "deny" }),
    calls: [1_000, 2_000],
    now: 3_000,
    want: "deny",
    reason: /^rate limit: t allows 2 call\(s\) per 60 s in test, 2 in the window; retry in 58 s$/,
  },
  {
    name: "onExceed deny still assigns within the limit",
    limit: limit({ onExceed: "deny" }),
    calls: [1_000],
    now: 3_000,
    want: "assign",
  },
  {
    name: "a wait within maxDelayMs is a delay",
    limit: limit({ windowMs: 1_000, maxDelayMs: 5_000 }),
    calls: [10_000, 10_500],
    now: 10_600,
    proposedAt: 7_000,
    want: "delay",
    ms: 400,
  },
  {
    name: "a wait past maxDelayMs from the proposal is denied with the reason",
    limit: limit({ maxDelayMs: 30_000 }),
    calls: [1_000, 2_000],
    now: 3_000,
    proposedAt: 3_000,
    want: "deny",
    reason: /waited 0 s and would need 58 s more, past the policy's maxDelayMs of 30 s/,
  },
  {
    name: "what a step has already waited counts towards maxDelayMs",
    limit: limit({ windowMs: 10_000, maxDelayMs: 19_000 }),
    calls: [100_000, 105_000],
    now: 106_000,
    proposedAt: 90_000,
    want: "deny",
    reason: /waited 16 s and would need 4 s more/,
  },
  {
    name: "a time that is not a number is denied",
    limit: limit(),
    calls: [],
    now: Number.NaN,
    want: "deny",
    reason: /not a finite number/,
  },
];

describe("rate limit decision", () => {
  it.each(rows)("rate - $name", (r) => {
    const d = decideRate({
      tool: "t",
      environment: "test",
      limit: r.limit,
      calls: r.calls,
      nowMs: r.now,
      proposedAtMs: r.proposedAt ?? r.now,
    });
    expect(d.type).toBe(r.want);
    if (r.ms !== undefined) expect(d.type === "delay" ? d.ms : null).toBe(r.ms);
    if (r.reason) expect(d.type === "assign" ? "" : d.reason).toMatch(r.reason);
  });

  it("rate - ratePerMinute is the shorthand for a delayed per-minute limit; not both", () => {
    const base = { op: "read", objects: { count: 1 }, domains: ["ledger"] };
    expect(rateLimitOf(ToolEntry.parse({ ...base, ratePerMinute: 5 }))).toEqual({
      calls: 5,
      windowMs: 60_000,
      onExceed: "delay",
      maxDelayMs: 300_000,
    });
    expect(rateLimitOf(ToolEntry.parse(base))).toBeNull();
    expect(
      ToolEntry.safeParse({ ...base, ratePerMinute: 5, rateLimit: { calls: 5 } }).success,
    ).toBe(false);
    expect(
      ToolEntry.safeParse({ ...base, rateLimit: { calls: 5, onExceed: "drop" } }).success,
    ).toBe(false);
  });
});

// The window every router replica shares: accepted calls by proposal id.
describe("shared rate window", () => {
  const base = { tool: "t", environment: "test", limit: limit(), proposedAtMs: 0 };
  it.each<{
    name: string;
    window: { id: string; at: number }[];
    id: string;
    now: number;
    want: RateDecision["type"];
    stored: string[] | null;
  }>([
    {
      name: "room: admitted and stored",
      window: [],
      id: "a",
      now: 1_000,
      want: "assign",
      stored: ["a"],
    },
    {
      name: "the same proposal again (a redelivery, a replay): admitted, not counted twice",
      window: [
        { id: "a", at: 1_000 },
        { id: "b", at: 2_000 },
      ],
      id: "a",
      now: 3_000,
      want: "assign",
      stored: null,
    },
    {
      name: "full: delayed, nothing stored",
      window: [
        { id: "a", at: 1_000 },
        { id: "b", at: 2_000 },
      ],
      id: "c",
      now: 3_000,
      want: "delay",
      stored: null,
    },
    {
      name: "calls that left the window are dropped from what is stored",
      window: [
        { id: "a", at: 1_000 },
        { id: "b", at: 30_000 },
      ],
      id: "c",
      now: 62_000,
      want: "assign",
      stored: ["b", "c"],
    },
  ])("shared rate window - $name", ({ window, id, now, want, stored }) => {
    const r = admitCall({ ...base, id, window, nowMs: now });
    expect(r.decision.type).toBe(want);
    expect(r.window?.map((c) => c.id) ?? null).toEqual(stored);
  });
});
