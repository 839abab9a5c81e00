import { describe, expect, it } from "vitest";
import { planTask, proposalFor } from "./index.js";

describe("proposer planner", () => {
  it("proposer - the same task always gives the same typed plan", () => {
    const task = {
      goal: "pay",
      program: "transfer",
      input: { from: "alice", to: "bob", amount: 5 },
      requestedBy: "t",
    };
    const a = planTask(task);
    expect(a).toEqual(planTask(task));
    expect(a.map((s) => s.tool)).toEqual(["ledger.balance", "ledger.transfer"]);
    expect(proposalFor(a, 1)).toMatchObject({
      tool: "ledger.transfer",
      index: 1,
      total: 2,
      replanOf: null,
    });
  });

  it("proposer - an unknown program or bad input is refused with what was wrong", () => {
    expect(() => planTask({ goal: "x", program: "nope", input: {}, requestedBy: "t" })).toThrow(
      /unknown program "nope": known programs are/,
    );
    expect(() =>
      planTask({ goal: "x", program: "transfer", input: { from: "a" }, requestedBy: "t" }),
    ).toThrow(/input for program "transfer" is invalid.*to/);
  });

  it("proposer - noop plans scale to many steps for benchmarks", () => {
    expect(
      planTask({
        goal: "x",
        program: "noop",
        input: { tier: "full", steps: 7 },
        requestedBy: "t",
      }).map((s) => s.tool),
    ).toEqual(Array(7).fill("noop.batch"));
  });
});
