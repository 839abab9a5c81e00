import { generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import {
  decode,
  decodeFrame,
  encode,
  encodeFrame,
  frameRef,
  parseMessage,
  proposalDigest,
  subjectOf,
  type BodyOf,
  type JsonObject,
  type Kind,
  type ReviewDecision,
  type ReviewRequirement,
  type ReviewStrategy,
  type Role,
  type RunOutcome,
  type Tier,
  type VerificationVerdict,
} from "@trias/protocol";
import { computeReceipt } from "./receipt.js";
import type { TraceEvent } from "./state.js";

/** Test-only: real Ed25519 identities and a builder that emits a run's signed trace. */

export interface TestIdentity {
  name: string;
  kid: string;
  role: Role;
  key: KeyObject;
  publicKey: KeyObject;
}

const NAMES: [string, Role][] = [
  ["console", "console"],
  ["proposer", "proposer"],
  ["router", "router"],
  ["reviewer-1", "reviewer"],
  ["reviewer-2", "reviewer"],
  ["reviewer-3", "reviewer"],
  ["executor", "executor"],
  ["verifier", "verifier"],
  ["human", "human"],
];

let shared: Map<string, TestIdentity> | null = null;

export function identities(): Map<string, TestIdentity> {
  shared ??= new Map(
    NAMES.map(([name, role]) => {
      const { privateKey, publicKey } = generateKeyPairSync("ed25519");
      return [name, { name, kid: `${name}:test`, role, key: privateKey, publicKey }];
    }),
  );
  return shared;
}

export const POLICY = "a".repeat(64);
export const REQ: Record<Tier, ReviewRequirement> = {
  light: { reviewers: 0, strategies: [], human: false },
  standard: { reviewers: 1, strategies: ["rules"], human: false },
  full: { reviewers: 2, strategies: ["rules", "llm"], human: true },
};

interface StepCtx {
  index: number;
  attempt: number;
  total: number;
  tool: string;
  args: JsonObject;
  tier: Tier;
  digest: string;
  proposal: Uint8Array;
  assignment: Uint8Array;
  approvals: { kid: string; frame: Uint8Array }[];
}

export class TraceBuilder {
  readonly events: TraceEvent[] = [];
  private seq = 0;
  private n = 0;
  readonly steps = new Map<number, StepCtx>();
  readonly ids = identities();

  constructor(
    readonly run: string,
    /** Stream seqs of other runs interleave; a gap between ours keeps tests honest about it. */
    readonly seqGap = 1,
  ) {}

  id(name: string): TestIdentity {
    const i = this.ids.get(name);
    if (!i) throw new Error(`no identity ${name}`);
    return i;
  }

  emit<K extends Kind>(
    who: string,
    kind: K,
    step: number | null,
    attempt: number,
    body: BodyOf<K>,
  ): TraceEvent {
    const i = this.id(who);
    this.n++;
    const envelope = {
      v: 1,
      id: `${this.run}-${String(this.n).padStart(6, "0")}`,
      run: this.run,
      step,
      attempt,
      kind,
      sender: i.kid,
      role: i.role,
      issuedAt: 1_700_000_000_000 + this.n,
      expiresAt: 1_700_000_000_000 + this.n + 60_000,
      trace: null,
      body,
    };
    const payload = encode(envelope);
    const sig = new Uint8Array(sign(null, payload, i.key));
    const frame = encodeFrame({ kid: i.kid, sig, payload });
    this.seq += this.seqGap;
    const ev: TraceEvent = {
      seq: this.seq,
      subject: subjectOf(i.role, kind, this.run, body),
      frame,
      message: parseMessage(decode(decodeFrame(frame).payload)),
    };
    this.events.push(ev);
    return ev;
  }

  submit(program = "demo"): TraceEvent {
    return this.emit("console", "task_submitted", null, 0, {
      goal: "test goal",
      program,
      input: {},
      requestedBy: "tester",
    });
  }

  propose(
    index: number,
    total: number,
    opts: { attempt?: number; tool?: string; args?: JsonObject; replanOf?: string | null } = {},
  ): TraceEvent {
    const attempt = opts.attempt ?? 0;
    const tool = opts.tool ?? "ledger.transfer";
    const args = opts.args ?? { from: "a", to: "b", amount: index + 1 };
    const ev = this.emit("proposer", "step_proposed", index, attempt, {
      tool,
      args,
      rationale: "because",
      expected: "done",
      index,
      total,
      replanOf: opts.replanOf ?? null,
      usage: null,
    });
    const digest = proposalDigest({
      tool,
      args,
      run: this.run,
      step: index,
      attempt,
      policyDigest: POLICY,
    });
    this.steps.set(index, {
      index,
      attempt,
      total,
      tool,
      args,
      tier: "light",
      digest,
      proposal: ev.frame,
      assignment: new Uint8Array(),
      approvals: [],
    });
    return ev;
  }

  ctx(index: number): StepCtx {
    const c = this.steps.get(index);
    if (!c) throw new Error(`step ${index} not proposed`);
    return c;
  }

  assign(
    index: number,
    tier: Tier,
    opts: { denied?: string | null; escalatedFrom?: Tier | null; digest?: string } = {},
  ): TraceEvent {
    const c = this.ctx(index);
    const ev = this.emit("router", "tier_assigned", index, c.attempt, {
      proposal: c.proposal,
      digest: opts.digest ?? c.digest,
      policyDigest: POLICY,
      environment: "test",
      tier,
      score: 0.1,
      explanation: [],
      requires: REQ[tier],
      escalatedFrom: opts.escalatedFrom ?? null,
      denied: opts.denied ?? null,
    });
    c.tier = tier;
    c.assignment = ev.frame;
    return ev;
  }

  verdict(
    index: number,
    who: string,
    decision: ReviewDecision = "approve",
    strategy?: ReviewStrategy,
  ): TraceEvent {
    const c = this.ctx(index);
    const i = this.id(who);
    const ev = this.emit(who, "verdict", index, c.attempt, {
      digest: c.digest,
      assignment: c.assignment,
      decision,
      strategy: strategy ?? (i.role === "human" ? "human" : "rules"),
      reasons: [],
    });
    if (decision === "approve") c.approvals.push({ kid: i.kid, frame: ev.frame });
    return ev;
  }

  /** The verdicts a tier needs, from distinct keys. */
  approveFor(index: number): void {
    const tier = this.ctx(index).tier;
    if (tier === "standard") this.verdict(index, "reviewer-1");
    if (tier === "full") {
      this.verdict(index, "reviewer-1", "approve", "rules");
      this.verdict(index, "reviewer-2", "approve", "llm");
      this.verdict(index, "human");
    }
  }

  execute(
    index: number,
    opts: { outcome?: "ok" | "error"; attempt?: number; who?: string } = {},
  ): TraceEvent {
    const c = this.ctx(index);
    const attempt = opts.attempt ?? c.attempt;
    const outcome = opts.outcome ?? "ok";
    return this.emit(opts.who ?? "executor", "step_executed", index, attempt, {
      digest: c.digest,
      tool: c.tool,
      args: c.args,
      tier: c.tier,
      outcome,
      result: outcome === "ok" ? { ok: true } : null,
      error: outcome === "ok" ? null : "boom",
      approvals: c.approvals.map((a) => a.kid),
      effectId: `${this.run}:${index}:${attempt}`,
      evidence: {
        assignment: frameRef(c.assignment),
        approvals: c.approvals.map((a) => frameRef(a.frame)),
      },
      compensationOf: null,
      index,
      total: c.total,
    });
  }

  verify(index: number, verdict: VerificationVerdict = "passed", attempt?: number): TraceEvent {
    const c = this.ctx(index);
    return this.emit("verifier", "step_verified", index, attempt ?? c.attempt, {
      digest: c.digest,
      tool: c.tool,
      verdict,
      checks: [{ name: "postcondition", ok: verdict === "passed", detail: verdict }],
      compensationOf: null,
      index,
      total: c.total,
    });
  }

  recover(
    index: number,
    action: BodyOf<"recovery_decided">["action"],
    opts: {
      nextAttempt?: number;
      avoid?: string[];
      compensation?: BodyOf<"recovery_decided">["compensation"];
      who?: string;
      ends?: BodyOf<"recovery_decided">["ends"];
    } = {},
  ): TraceEvent {
    const c = this.ctx(index);
    return this.emit(opts.who ?? "verifier", "recovery_decided", index, c.attempt, {
      digest: c.digest,
      action,
      reason: `test ${action}`,
      compensation: opts.compensation ?? null,
      avoid: opts.avoid ?? [],
      nextAttempt: opts.nextAttempt ?? c.attempt + 1,
      notBefore: null,
      evidence: null,
      ...(opts.ends ? { ends: opts.ends } : {}),
    });
  }

  /** A signed compensate order, its execution and its verification for step `index`. */
  compensate(index: number, opts: { order?: boolean; verdict?: VerificationVerdict } = {}): void {
    const c = this.ctx(index);
    const tool = "ledger.transfer";
    const args: JsonObject = { from: "b", to: "a", amount: index + 1 };
    if (opts.order ?? true)
      this.recover(index, "compensate", {
        compensation: { step: index, of: c.digest, tool, args },
      });
    this.emit("executor", "step_executed", index, c.attempt, {
      digest: c.digest,
      tool,
      args,
      tier: c.tier,
      outcome: "ok",
      result: { ok: true },
      error: null,
      approvals: [],
      effectId: `${this.run}:${index}:${c.attempt}:undo:${this.n}`,
      evidence: { assignment: frameRef(c.assignment), approvals: [] },
      compensationOf: c.digest,
      index,
      total: c.total,
    });
    this.emit("verifier", "step_verified", index, c.attempt, {
      digest: c.digest,
      tool,
      verdict: opts.verdict ?? "passed",
      checks: [],
      compensationOf: c.digest,
      index,
      total: c.total,
    });
  }

  /** propose, assign, approve, execute, verify. */
  step(index: number, total: number, tier: Tier, verdict: VerificationVerdict = "passed"): void {
    this.propose(index, total);
    this.assign(index, tier);
    this.approveFor(index);
    this.execute(index);
    this.verify(index, verdict);
  }

  reject(by: string, reason: string): TraceEvent {
    return this.emit(by, "message_rejected", null, 0, {
      code: "illegal_transition",
      reason,
      subject: `trias.x.y.${this.run}`,
      seq: null,
      messageId: null,
      sender: null,
      by,
    });
  }

  /** run_closed with the receipt of every event so far, as the verifier seals it. */
  close(outcome: RunOutcome = "completed", steps = this.steps.size): TraceEvent {
    return this.emit("verifier", "run_closed", null, 0, {
      outcome,
      reason: outcome,
      steps,
      receipt: computeReceipt(this.events, this.run),
      topology: null,
    });
  }

  /** A clean linear run of `n` steps with the given tiers (cycled). */
  static linear(
    run: string,
    n: number,
    tiers: Tier[] = ["light", "standard", "full"],
  ): TraceBuilder {
    const t = new TraceBuilder(run);
    t.submit();
    for (let i = 0; i < n; i++) t.step(i, n, tiers[i % tiers.length] ?? "light");
    t.close("completed");
    return t;
  }
}
