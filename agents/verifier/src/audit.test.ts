import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadPolicy, shippedPolicyFile, unknownRun, type RunView } from "@trias/policy";
import {
  PROTOCOL_VERSION,
  frameRef,
  proposalDigest,
  type BodyOf,
  type Kind,
  type MessageOf,
  type ReviewRequirement,
  type Tier,
} from "@trias/protocol";
import { KeyRegistry, REGISTRY_FILE, Signer, initKeyDir, keyFileName } from "@trias/signing";
import { auditExecution, type FrameLookup } from "./audit.js";

// The verifier's audit of an execution, with real keys and no server: whatever the signed
// assignment says, the audit re-derives what the step required from its own policy and the
// run it followed, and counts the quorum against the stricter of the two.
const policy = loadPolicy(shippedPolicyFile("dev"));
let dir: string;
let registry: KeyRegistry;
const signers = new Map<string, Signer>();

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "trias-audit-"));
  await initKeyDir(dir);
  registry = KeyRegistry.load(join(dir, REGISTRY_FILE));
  for (const n of ["proposer", "router", "reviewer-1", "reviewer-2", "executor"])
    signers.set(n, Signer.load(join(dir, keyFileName(n))));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

let n = 0;
function seal<K extends Kind>(as: string, kind: K, attempt: number, body: BodyOf<K>) {
  const s = signers.get(as)!;
  const message = {
    v: PROTOCOL_VERSION,
    id: `audit-test-${n++}`,
    kind,
    run: "r1",
    step: 0,
    attempt,
    sender: s.kid,
    role: s.role,
    issuedAt: Date.now(),
    expiresAt: Date.now() + 60_000,
    trace: null,
    body,
  } as MessageOf<K>;
  return { message, bytes: s.seal(message) };
}

function execution(
  tool: string,
  args: Record<string, unknown>,
  tier: Tier,
  requires: ReviewRequirement,
  reviewers: string[] = [],
  attempt = 0,
): { m: MessageOf<"step_executed">; frames: FrameLookup } {
  const p = seal("proposer", "step_proposed", attempt, {
    tool,
    args: args as never,
    rationale: "",
    expected: "",
    index: 0,
    total: 1,
    replanOf: null,
    usage: null,
  });
  const digest = proposalDigest({
    tool,
    args,
    run: "r1",
    step: 0,
    attempt,
    policyDigest: policy.digest,
  });
  const a = seal("router", "tier_assigned", attempt, {
    proposal: p.bytes,
    digest,
    policyDigest: policy.digest,
    environment: "dev",
    tier,
    score: 0,
    explanation: [],
    requires,
    escalatedFrom: null,
    denied: null,
  });
  const approvals = reviewers.map(
    (r) =>
      seal(r, "verdict", attempt, {
        digest,
        assignment: a.bytes,
        decision: "approve",
        strategy: "rules",
        reasons: [],
      }).bytes,
  );
  // The run's trace, as the verifier would look the evidence up in it.
  const trace = new Map([a.bytes, ...approvals].map((f) => [frameRef(f), f]));
  const m = seal("executor", "step_executed", attempt, {
    digest,
    tool,
    args: args as never,
    tier,
    outcome: "ok",
    result: null,
    error: null,
    approvals: [],
    effectId: `r1:0:${attempt}`,
    evidence: { assignment: frameRef(a.bytes), approvals: approvals.map(frameRef) },
    compensationOf: null,
    index: 0,
    total: 1,
  }).message;
  return { m, frames: (ref) => trace.get(ref) };
}

const failed = (
  e: { m: MessageOf<"step_executed">; frames: FrameLookup },
  view: RunView = unknownRun(),
) =>
  auditExecution(registry, e.m, policy, view, e.frames)
    .filter((c) => !c.ok)
    .map((c) => c.name);

const PAYOUT = { batch: "b", payouts: [{ account: "bob", amount: 1 }] };
const LIGHT = { reviewers: 0, strategies: [], human: false };
const FULL = { reviewers: 2, strategies: ["rules" as const], human: false };

describe("verifier audit", () => {
  it("audit - a full payout with its two approvals is authorised", () => {
    expect(
      failed(execution("ledger.batch_payout", PAYOUT, "full", FULL, ["reviewer-1", "reviewer-2"])),
    ).toEqual([]);
  });

  it("audit - the router's key alone (a payout assigned light, no reviewer) is caught", () => {
    const e = execution("ledger.batch_payout", PAYOUT, "light", LIGHT);
    expect(failed(e)).toEqual(["tier is at least the policy's"]);
    const why = auditExecution(registry, e.m, policy, unknownRun(), e.frames).find(
      (c) => !c.ok,
    )?.detail;
    expect(why).toMatch(/tier_downgrade: assigned light .* at least full/);
  });

  it("audit - the quorum is counted against the policy, not the signed requirement", () => {
    // Tier full as the policy says, but asking for one reviewer: one approval is not enough.
    const m = execution("ledger.batch_payout", PAYOUT, "full", { ...FULL, reviewers: 1 }, [
      "reviewer-1",
    ]);
    expect(failed(m)).toEqual(["tier is at least the policy's"]);
  });

  it("audit - a retry routed light after a failure (a floor the executor cannot see) is caught", () => {
    const m = execution("flaky.write", { key: "k", passFromAttempt: 0 }, "light", LIGHT, [], 1);
    expect(failed(m, unknownRun())).toEqual([]);
    expect(failed(m, { proposals: 2, failures: 1, stepFloor: "light" })).toEqual([
      "tier is at least the policy's",
    ]);
  });

  it("audit - evidence the run's trace does not hold, or that does not match its digest, verifies nothing", () => {
    const e = execution("ledger.batch_payout", PAYOUT, "full", FULL, ["reviewer-1", "reviewer-2"]);
    const [first] = e.m.body.evidence.approvals;
    // An approval frame missing from the trace.
    const missing = (ref: string) => (ref === first ? undefined : e.frames(ref));
    expect(failed({ m: e.m, frames: missing })).toEqual(["authorisation evidence verifies"]);
    // A lookup that answers with another frame than the one named (its digest differs).
    const swapped = (ref: string) =>
      ref === first ? e.frames(e.m.body.evidence.assignment) : e.frames(ref);
    const checks = auditExecution(registry, e.m, policy, unknownRun(), swapped);
    expect(checks.find((c) => !c.ok)?.detail).toMatch(/does not hold/);
  });
});
