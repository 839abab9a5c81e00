import { describe, expect, it } from "vitest";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import { PROTOCOL_VERSION, proposalDigest, type MessageOf } from "@trias/protocol";
import { assign, emptyContext } from "./index.js";

const policy = loadPolicy(shippedPolicyFile("dev"));
const proposal = (tool: string, args: Record<string, unknown>): MessageOf<"step_proposed"> => ({
  v: PROTOCOL_VERSION,
  id: "p-0000001",
  kind: "step_proposed",
  run: "r1",
  step: 0,
  attempt: 0,
  sender: "proposer:x",
  role: "proposer",
  issuedAt: 0,
  expiresAt: 1,
  trace: null,
  body: {
    tool,
    args: args as never,
    rationale: "",
    expected: "",
    index: 0,
    total: 1,
    replanOf: null,
    usage: null,
  },
});

describe("router", () => {
  it("router - assigns the default tiers (docs/design.md) and binds the digest to the policy", () => {
    const frame = new Uint8Array([1]);
    const light = assign(policy, proposal("ledger.balance", { account: "a" }), frame);
    const standard = assign(
      policy,
      proposal("ledger.transfer", { from: "a", to: "b", amount: 1 }),
      frame,
    );
    const full = assign(
      policy,
      proposal("ledger.batch_payout", { batch: "b", payouts: [{}, {}] }),
      frame,
    );
    expect([light.tier, standard.tier, full.tier]).toEqual(["light", "standard", "full"]);
    expect(full.requires.reviewers).toBe(2);
    expect(standard.policyDigest).toBe(policy.digest);
    expect(standard.digest).toBe(
      proposalDigest({
        tool: "ledger.transfer",
        args: { from: "a", to: "b", amount: 1 },
        run: "r1",
        step: 0,
        attempt: 0,
        policyDigest: policy.digest,
      }),
    );
    expect(standard.explanation.join(" ")).toMatch(/risk 0.355/);
  });

  it("router - a step seen before never goes below its earlier tier", () => {
    const ctx = emptyContext();
    ctx.floors.set(0, "full");
    const again = assign(
      policy,
      proposal("ledger.balance", { account: "a" }),
      new Uint8Array([1]),
      ctx,
    );
    expect(again.tier).toBe("full");
    expect(again.escalatedFrom).toBe("light");
  });

  it("router - a failure earlier in the run raises every later step, one way", () => {
    const ctx = emptyContext();
    ctx.failures = 1;
    const later = assign(
      policy,
      proposal("ledger.balance", { account: "a" }),
      new Uint8Array([1]),
      ctx,
    );
    expect(later.tier).toBe(policy.doc.escalation.afterFailure);
    expect(later.escalatedFrom).toBe("light");
    expect(later.explanation.join(" ")).toMatch(/1 failed verification/);
  });

  it("router - a run past its step budget is denied with the reason", () => {
    const ctx = emptyContext();
    ctx.proposals = policy.doc.budgets.steps + 1;
    const d = assign(
      policy,
      proposal("ledger.balance", { account: "a" }),
      new Uint8Array([1]),
      ctx,
    );
    expect(d.denied).toMatch(/budget exceeded: 51 steps used, the dev policy allows 50 per run/);
  });

  it("router - model tokens spent on a run count against its budget", () => {
    const ctx = emptyContext();
    ctx.proposals = 2;
    ctx.tokens = policy.doc.budgets.tokens + 1;
    const d = assign(
      policy,
      proposal("ledger.balance", { account: "a" }),
      new Uint8Array([1]),
      ctx,
    );
    expect(d.denied).toMatch(
      /budget exceeded: 200001 tokens used, the dev policy allows 200000 per run/,
    );
  });
});
