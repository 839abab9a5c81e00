import { describe, expect, it } from "vitest";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import {
  MAX_FRAME_BYTES,
  type ReviewRequirement,
  type ReviewStrategy,
  type Tier,
} from "@trias/protocol";
import type { OpenedVerdict } from "@trias/runtime";
import { Catalogue, ledgerPack, testPack, type ToolDef } from "@trias/tools";
import { checkStep, type GateDecision, type GateInput } from "./gate.js";

// The shipped packs, unopened: the gate only looks tools up, it runs none.
const TOOLS = await Catalogue.open([ledgerPack, testPack], null);

// The gate as data in, decision out: no server, no keys (the keys are checked before the
// gate, by the host and openVerdict; what reaches it is already opened).
const policy = loadPolicy(shippedPolicyFile("dev"));

const REQ: Record<Tier, ReviewRequirement> = {
  light: { reviewers: 0, strategies: [], human: false },
  standard: { reviewers: 1, strategies: ["rules"], human: false },
  full: { reviewers: 2, strategies: ["rules"], human: false },
};

function approval(kid: string, strategy: ReviewStrategy = "rules"): OpenedVerdict {
  return {
    message: { body: { decision: "approve", strategy } },
    key: { kid, name: kid, role: strategy === "human" ? "human" : "reviewer", status: "active" },
    bytes: new Uint8Array(100),
  } as unknown as OpenedVerdict;
}

const READ = { tool: "ledger.balance", args: { account: "alice" } };
const TRANSFER = { tool: "ledger.transfer", args: { from: "alice", to: "bob", amount: 5 } };
const PAYOUT = {
  tool: "ledger.batch_payout",
  args: { batch: "b1", payouts: [{ account: "bob", amount: 1 }] },
};

function input(o: {
  step?: { tool: string; args: Record<string, unknown> };
  tier?: Tier;
  requires?: ReviewRequirement;
  denied?: string | null;
  policyDigest?: string;
  approvals?: OpenedVerdict[];
  veto?: string | null;
  windowClosed?: boolean;
  executionBytes?: number;
  catalogue?: GateInput["catalogue"];
}): GateInput {
  const tier = o.tier ?? "light";
  const step = o.step ?? READ;
  return {
    policy,
    assignment: {
      policyDigest: o.policyDigest ?? policy.digest,
      tier,
      requires: o.requires ?? REQ[tier],
      denied: o.denied ?? null,
    },
    step: { tool: step.tool, args: step.args, run: "r1", step: 0, attempt: 0 },
    view: { proposals: 1, failures: 0, stepFloor: "light" },
    approvals: o.approvals ?? [],
    veto: o.veto ?? null,
    windowClosed: o.windowClosed ?? false,
    windowMs: 1500,
    executionBytes: o.executionBytes ?? 2_000,
    maxFrameBytes: MAX_FRAME_BYTES,
    catalogue: o.catalogue ?? TOOLS,
  };
}

const without = (name: string) => ({
  get: (n: string): ToolDef | undefined => (n === name ? undefined : TOOLS.get(n)),
});

const CASES: [string, GateInput, GateDecision["kind"], string | RegExp][] = [
  ["a light read with no approval runs", input({}), "run", ""],
  [
    "a standard transfer with its reviewer runs",
    input({ step: TRANSFER, tier: "standard", approvals: [approval("r1")] }),
    "run",
    "",
  ],
  [
    "an assignment above the policy (a floor the gate cannot see) is acted on at its tier",
    input({ tier: "standard", approvals: [approval("r1")] }),
    "run",
    "",
  ],
  [
    "another policy digest is refused",
    input({ policyDigest: "0".repeat(64) }),
    "refuse",
    "policy_digest_mismatch",
  ],
  ["a step the assignment denies is skipped", input({ denied: "no" }), "skip", ""],
  [
    "a step the policy denies but the assignment does not is refused",
    input({ step: { tool: "ledger.transfer", args: { ...TRANSFER.args, amount: 20_000 } } }),
    "refuse",
    "policy_denied",
  ],
  [
    "a batch payout assigned light with no reviewer is a downgrade",
    input({ step: PAYOUT, tier: "light" }),
    "refuse",
    "tier_downgrade",
  ],
  [
    "a batch payout assigned standard is a downgrade",
    input({ step: PAYOUT, tier: "standard", approvals: [approval("r1")] }),
    "refuse",
    "tier_downgrade",
  ],
  [
    "the right tier with fewer reviewers than the policy's is a downgrade",
    input({ step: PAYOUT, tier: "full", requires: { ...REQ.full, reviewers: 1 } }),
    "refuse",
    "tier_downgrade",
  ],
  [
    "strategies the policy does not accept do not count (the assignment cannot widen them)",
    input({
      step: TRANSFER,
      tier: "standard",
      requires: { reviewers: 1, strategies: ["rules", "llm"], human: false },
      approvals: [approval("r1", "llm")],
    }),
    "wait",
    "",
  ],
  [
    "a veto skips the step",
    input({ step: TRANSFER, tier: "standard", veto: "reviewer-1 said reject" }),
    "skip",
    "",
  ],
  [
    "too few approvals wait while the window is open",
    input({ step: PAYOUT, tier: "full", approvals: [approval("r1")] }),
    "wait",
    "",
  ],
  [
    "too few approvals are refused once the window closed",
    input({ step: PAYOUT, tier: "full", approvals: [approval("r1")], windowClosed: true }),
    "refuse",
    "quorum_not_met",
  ],
  [
    "a human approval does not stand in for a reviewer",
    input({ step: TRANSFER, tier: "standard", approvals: [approval("h", "human")] }),
    "wait",
    "",
  ],
  [
    "a tool missing from the tool pack is out of scope",
    input({ catalogue: without("ledger.balance") }),
    "refuse",
    "scope_denied",
  ],
  [
    "invalid arguments are out of scope",
    input({ step: { tool: "ledger.balance", args: { account: "NOT VALID" } } }),
    "refuse",
    "scope_denied",
  ],
  [
    "a record that could not fit a frame is refused before the effect",
    input({ executionBytes: MAX_FRAME_BYTES }),
    "refuse",
    "payload_too_large",
  ],
];

describe("executor gate (pure)", () => {
  it.each(CASES)("gate - %s", (_name, g, kind, code) => {
    const d = checkStep(g);
    expect(d.kind).toBe(kind);
    if (d.kind === "refuse") {
      expect(d.code).toBe(code);
      expect(d.reason.length).toBeGreaterThan(10);
    }
  });

  it("gate - every refusal code the gate can give is in the table", () => {
    const codes = new Set(
      CASES.map(([, g]) => checkStep(g)).flatMap((d) => (d.kind === "refuse" ? [d.code] : [])),
    );
    expect([...codes].sort()).toEqual(
      [
        "payload_too_large",
        "policy_denied",
        "policy_digest_mismatch",
        "quorum_not_met",
        "scope_denied",
        "tier_downgrade",
      ].sort(),
    );
  });

  it("gate - a downgrade names the tier the policy wants and the tool", () => {
    const d = checkStep(input({ step: PAYOUT, tier: "light" }));
    expect(d.kind === "refuse" && d.reason).toMatch(
      /assigned light.*ledger\.batch_payout at least full/,
    );
  });

  it("gate - the run decision counts approvals against the stricter requirement", () => {
    const d = checkStep(
      input({ step: PAYOUT, tier: "full", approvals: [approval("r1"), approval("r2")] }),
    );
    expect(d.kind).toBe("run");
    if (d.kind === "run") {
      expect(d.requires.reviewers).toBe(2);
      expect(d.quorum.counted).toEqual(["r1", "r2"]);
    }
  });
});
