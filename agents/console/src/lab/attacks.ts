import { randomBytes } from "node:crypto";
import type { Bus } from "@trias/bus";
import {
  encode,
  encodeFrame,
  runFilter,
  subjectFor,
  type MessageOf,
  type ReviewRequirement,
  type Tier,
} from "@trias/protocol";
import type { KeyRegistry, Opened, Signer } from "@trias/signing";
import type { Ledger } from "@trias/tools";
import { auditAll, auditEvents, readRun, type StoredEvent } from "../audit.js";
import type { ConsoleClient } from "../client.js";
import { eraseSubject, sealTaskInput, subjectKeys } from "../privacy.js";
import type { Forge } from "./forge.js";

/**
 * What an attack came to, computed from what the lab observed (effects in the ledger and the
 * trace, rejection records, audit results), never assumed:
 * - `defended`: the outcome the invariants demand happened;
 * - `breached`: an unauthorised effect, or the attack did what it tried (a hole);
 * - `silent`: nothing happened, but nothing refused the attack either (no rejection record);
 * - `stuck`: the run did not reach the state the attack expects within the time allowed;
 * - `crashed`: the attack's own run threw (a stack that went away, an unexpected error);
 * - `not_available`: the stack lacks what the attack needs (reported, never counted as passed).
 */
export type LabVerdict = "defended" | "breached" | "silent" | "stuck" | "crashed" | "not_available";

/** Verdicts that make `trias lab` exit non-zero. */
export const FAILING_VERDICTS: readonly LabVerdict[] = ["breached", "silent", "stuck", "crashed"];

export interface Observed {
  verdict: LabVerdict;
  /** What happened, in one line (rejection codes, effects, audit result). */
  observed: string;
  /** The run(s) the attack used, to look at with `trias trace`. */
  runs: string[];
}

/** What an attack needs from the stack it runs against. */
export interface LabContext {
  bus: Bus;
  registry: KeyRegistry;
  forge: Forge;
  signer(name: string): Signer;
  ledger: Ledger;
  client: ConsoleClient;
  /** The digest of the policy the stack's executor enforces. */
  policyDigest: string;
  /** How long to wait for each expected reaction (a rejection, an execution, a close). */
  timeoutMs: number;
  /** Seeded: the same seed picks the same amounts, keys and byte positions. */
  random(): number;
  /** NATS credentials of an agent role, when the stack runs with per-role users. */
  /** NATS credentials of an identity (e.g. `reviewer-1`), when the stack runs a user per identity. */
  natsCredentials(identity: string): { user?: string; pass?: string } | null;
  /** The durable consumers an identity's agent creates. */
  durablesOf(identity: string): string[];
  /** Connect a second client as some NATS user (consumer hijacking). */
  connectAs(creds: { user?: string; pass?: string }): Promise<Bus>;
  /** Whether destructive attacks (purging a run, deleting a consumer) may run here. */
  destructive: boolean;
  /** A closed, anchored run of a real task through every agent (one per trial). */
  /** `fresh`: a run of its own, for an attack that destroys it. */
  cleanRun(o?: { fresh?: boolean }): Promise<{ run: string; events: StoredEvent[] }>;
  uniqueRun(prefix: string): string;
}

export interface Attack {
  name: string;
  /** The invariants of docs/design.md it tests. */
  invariants: number[];
  /** The outcome those invariants demand. */
  expected: string;
  run(ctx: LabContext): Promise<Observed>;
}

// ---------------------------------------------------------------- observation

interface Facts {
  trace: Opened[];
  /** step_executed messages with outcome ok, and ledger effects recorded for the run. */
  effects: number;
  rejections: MessageOf<"message_rejected">[];
}

async function facts(ctx: LabContext, run: string): Promise<Facts> {
  const trace: Opened[] = [];
  for (const m of await ctx.bus.readAll(runFilter(run))) {
    try {
      trace.push(ctx.registry.open(m.data));
    } catch {
      // Frames no key opens are what the agents refused; their refusal is in the trace.
    }
  }
  const executed = trace.filter(
    (o) => o.message.kind === "step_executed" && o.message.body.outcome === "ok",
  ).length;
  const { state } = await ctx.ledger.read();
  const applied = Object.keys(state.applied).filter((k) => k.startsWith(`${run}:`)).length;
  return {
    trace,
    effects: Math.max(executed, applied),
    rejections: trace
      .map((o) => o.message)
      .filter((m): m is MessageOf<"message_rejected"> => m.kind === "message_rejected"),
  };
}

/** Poll the run's facts until `done` holds or the lab's timeout passes. */
async function settle(
  ctx: LabContext,
  run: string,
  done: (f: Facts) => boolean,
): Promise<{ f: Facts; timedOut: boolean }> {
  const deadline = Date.now() + ctx.timeoutMs;
  for (;;) {
    const f = await facts(ctx, run);
    if (done(f)) return { f, timedOut: false };
    if (Date.now() > deadline) return { f, timedOut: true };
    await new Promise((r) => setTimeout(r, POLL_MS));
  }
}

/**
 * How often the lab looks at the trace while it waits.
 * @default 150 ms
 */
const POLL_MS = 150;

function codes(rs: readonly MessageOf<"message_rejected">[], by?: string): string[] {
  return [...new Set(rs.filter((r) => !by || r.body.by === by).map((r) => r.body.code))];
}

/**
 * The verdict of an attack that must change nothing but the rejection record (invariant 4):
 * an effect is a breach; no refusal by `by` is silent acceptance.
 */
function judgeRefusal(run: string, f: Facts, by: string): Observed {
  const refused = codes(f.rejections, by);
  if (f.effects > 0)
    return {
      verdict: "breached",
      observed: `${f.effects} effect(s) applied${refused.length ? `; refused: ${refused.join(", ")}` : ""}`,
      runs: [run],
    };
  if (refused.length === 0)
    return { verdict: "silent", observed: `no effect, but no refusal by ${by}`, runs: [run] };
  return {
    verdict: "defended",
    observed: `no effect; ${by} refused: ${refused.join(", ")}`,
    runs: [run],
  };
}

/** Publish, then wait for a refusal by `by` or an effect, and judge. */
async function refusalAttack(
  ctx: LabContext,
  run: string,
  by: string,
  act: () => Promise<void>,
): Promise<Observed> {
  await act();
  const { f } = await settle(ctx, run, (x) => x.effects > 0 || codes(x.rejections, by).length > 0);
  // A moment more: a refusal may be followed by an effect the attacker hoped for.
  const later = await facts(ctx, run);
  return judgeRefusal(run, later.effects >= f.effects ? later : f, by);
}

// ---------------------------------------------------------------- building blocks

const NONE: ReviewRequirement = { reviewers: 0, strategies: [], human: false };
const ONE: ReviewRequirement = { reviewers: 1, strategies: ["rules"], human: false };
const TWO: ReviewRequirement = { reviewers: 2, strategies: ["rules"], human: false };

function pick<T>(ctx: LabContext, xs: readonly T[]): T {
  return xs[Math.floor(ctx.random() * xs.length)] as T;
}

/** A small transfer between demo accounts, its amount drawn from the seed. */
function transferArgs(ctx: LabContext): Record<string, unknown> {
  return { from: "alice", to: "bob", amount: 1 + Math.floor(ctx.random() * 9) };
}

/**
 * A step the policy puts in the light tier (a read of nothing): attacks on admission use it,
 * so the only thing wrong with the message is what the attack changed.
 */
function echo(ctx: LabContext): { tool: string; args: Record<string, unknown> } {
  return { tool: "noop.echo", args: { n: Math.floor(ctx.random() * 1000) } };
}

function reviewerKey(ctx: LabContext): string {
  return pick(ctx, ["reviewer-1", "reviewer-2"]);
}

/**
 * A router-signed assignment published on the plain assignment subject: the executor takes
 * it, the running reviewers never see it (they consume only REVIEW_TOKEN), so every verdict
 * the executor gets for it is the lab's.
 */
async function assign(
  ctx: LabContext,
  run: string,
  tier: Tier,
  requires: ReviewRequirement,
  o: { tool?: string; args?: Record<string, unknown>; policyDigest?: string } = {},
) {
  const p = ctx.forge.proposal(run, {
    args: o.args ?? transferArgs(ctx),
    ...(o.tool ? { tool: o.tool } : {}),
  });
  const a = ctx.forge.assignment(p, o.policyDigest ?? ctx.policyDigest, tier, requires);
  await ctx.forge.publish(subjectFor("router", "tier_assigned", run), a.bytes);
  return a;
}

/** The first event whose subject contains `token`. */
function eventOf(events: readonly StoredEvent[], token: string): StoredEvent {
  const e = events.find((x) => x.subject.includes(token));
  if (!e) throw new Error(`the clean run has no ${token} event`);
  return e;
}

/**
 * Onboard an invented customer through the kyc program (personal fields sealed as the console
 * seals them), erase the subject during the run (after its first execution) or after its
 * close, and judge from the stored frames: the run closes, its receipts verify, no clear
 * personal value is in any frame of the run or of the erasure, the key reads as erased.
 */
async function eraseCase(ctx: LabContext, during: boolean): Promise<Observed> {
  const n = Math.floor(ctx.random() * 1_000_000);
  const subject = `c-lab-${n.toString(36)}-${during ? "d" : "a"}`;
  const personal = {
    name: `Labsubject Number${n}`,
    dob: "1980-05-17",
    email: `lab${n}@example.org`,
    document: `LB${String(1_000_000 + n).slice(-7)}`,
  };
  const when = during ? "during" : "after";
  const run = ctx.uniqueRun(`lab-erase-${when}`);
  const input = await sealTaskInput(() => subjectKeys(ctx.bus), {
    subject,
    country: "FR",
    monthlyVolume: 100,
    pep: false,
    personal,
  });
  await ctx.client.submit(
    { goal: "onboard a customer", program: "kyc", input, requestedBy: "lab" },
    run,
  );
  const first = await settle(ctx, run, (x) =>
    x.trace.some((o) =>
      during ? o.message.kind === "step_executed" : o.message.kind === "run_closed",
    ),
  );
  if (first.timedOut)
    return {
      verdict: "stuck",
      observed: `${when}: the run did not reach ${during ? "its first execution" : "its close"}`,
      runs: [run],
    };
  const erasure = await eraseSubject(ctx.client, subject, "lab: gdpr_erase", "lab");
  const { f, timedOut } = await settle(ctx, run, (x) =>
    x.trace.some((o) => o.message.kind === "run_closed"),
  );
  const closed = f.trace.find((o) => o.message.kind === "run_closed")?.message as
    MessageOf<"run_closed"> | undefined;
  if (!closed)
    return {
      verdict: timedOut ? "stuck" : "silent",
      observed: `${when}: the run did not close after the erasure`,
      runs: [run, erasure.run],
    };
  const stored = await readRun(ctx.bus, run);
  const audit = auditEvents(ctx.registry, run, stored);
  const frames = [...stored, ...(await readRun(ctx.bus, erasure.run))];
  const leaked = Object.entries(personal).filter(([, v]) =>
    frames.some((e) => Buffer.from(e.data).includes(v)),
  );
  const key = (await (await subjectKeys(ctx.bus)).get(subject)).state;
  return {
    verdict: audit.ok && key === "erased" && leaked.length === 0 ? "defended" : "breached",
    observed: `${when}: run closed ${closed.body.outcome}, key ${key}, audit ${audit.ok ? "OK" : `FAILED at #${audit.firstBad?.seq ?? "?"}`}, ${leaked.length ? `clear ${leaked.map(([k]) => k).join(", ")} found` : "no clear datum in the stored frames"}`,
    runs: [run, erasure.run],
  };
}

// ---------------------------------------------------------------- the attacks

export const ATTACKS: readonly Attack[] = [
  {
    name: "tool_injection",
    invariants: [1, 10],
    expected: "a tool outside the catalogue is refused by the executor's scope check; no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-inject");
      const tool = pick(ctx, ["shell.exec", "fs.write", "ledger.mint"]);
      return refusalAttack(ctx, run, "executor", async () => {
        await assign(ctx, run, "light", NONE, { tool, args: { cmd: "rm -rf /" } });
      });
    },
  },
  {
    name: "policy_bypass",
    invariants: [1, 4],
    expected:
      "a step routed under another policy digest is refused (policy_digest_mismatch); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-policy");
      return refusalAttack(ctx, run, "executor", async () => {
        await assign(ctx, run, "light", NONE, {
          ...echo(ctx),
          policyDigest: randomBytes(32).toString("hex"),
        });
      });
    },
  },
  {
    name: "skip_step",
    invariants: [1, 10],
    expected:
      "an execution reported for a step that never passed the gate (executor key) quarantines the run",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-skip");
      await ctx.client.submit(
        {
          goal: "pay",
          program: "transfer",
          input: { from: "alice", to: "bob", amount: 1 },
          requestedBy: "lab",
        },
        run,
      );
      const amount = 100 + Math.floor(ctx.random() * 900);
      const fake = ctx.forge.envelope("executor", "step_executed", {
        run,
        step: 1,
        body: {
          digest: "a".repeat(64),
          tool: "ledger.transfer",
          args: { from: "alice", to: "bob", amount },
          tier: "standard",
          outcome: "ok",
          result: null,
          error: null,
          approvals: [],
          effectId: `${run}:1:0`,
          evidence: { assignment: new Uint8Array([1]), approvals: [] },
          compensationOf: null,
          index: 1,
          total: 2,
        },
      });
      await ctx.forge.publish(
        subjectFor("executor", "step_executed", run),
        ctx.forge.seal("executor", fake),
      );
      const { f, timedOut } = await settle(ctx, run, (x) =>
        x.trace.some((o) => o.message.kind === "run_closed"),
      );
      const closed = f.trace.find((o) => o.message.kind === "run_closed")?.message as
        MessageOf<"run_closed"> | undefined;
      if (!closed)
        return {
          verdict: timedOut ? "stuck" : "silent",
          observed: "the run did not close",
          runs: [run],
        };
      // Refused at admission (no signed record of it counted) is as good as quarantined.
      const refused = codes(f.rejections, "verifier");
      return {
        verdict:
          closed.body.outcome === "quarantined" || refused.length > 0 ? "defended" : "breached",
        observed: `run closed ${closed.body.outcome}${refused.length ? `; verifier refused: ${refused.join(", ")}` : ""}`,
        runs: [run],
      };
    },
  },
  {
    name: "reorder_steps",
    invariants: [7],
    expected:
      "two covered events of a closed run swapped: the audit fails naming the first out of place",
    run: async (ctx) => {
      const { run, events } = await ctx.cleanRun();
      const i = 1 + Math.floor(ctx.random() * Math.max(1, events.length - 3));
      const swapped = [...events];
      [swapped[i], swapped[i + 1]] = [swapped[i + 1]!, swapped[i]!];
      const r = auditEvents(ctx.registry, run, swapped);
      return {
        verdict: r.ok ? "silent" : "defended",
        observed: r.ok
          ? "the audit accepted the reordered trace"
          : `audit failed: ${r.firstBad?.reason ?? r.problems[0] ?? ""}`,
        runs: [run],
      };
    },
  },
  {
    name: "corrupt_receipt",
    invariants: [7],
    expected: "one changed byte in a covered event: the audit fails naming that event",
    run: async (ctx) => {
      const { run, events } = await ctx.cleanRun();
      const target = events[Math.floor(ctx.random() * events.length)]!;
      const at = Math.floor(ctx.random() * target.data.length);
      const data = Uint8Array.from(target.data);
      data[at] = (data[at] ?? 0) ^ 0x40;
      const r = auditEvents(
        ctx.registry,
        run,
        events.map((e) => (e.seq === target.seq ? { ...e, data } : e)),
      );
      const named = r.firstBad?.seq === target.seq;
      return {
        verdict: !r.ok && named ? "defended" : r.ok ? "silent" : "breached",
        observed: r.ok
          ? `byte ${at} of #${target.seq} changed; the audit passed`
          : `byte ${at} of #${target.seq} changed; audit failed at #${r.firstBad?.seq ?? "?"}`,
        runs: [run],
      };
    },
  },
  {
    name: "gdpr_erase",
    invariants: [7, 9],
    expected:
      "two KYC subjects, one erased during its run and one after: each run closes, every receipt still verifies, no personal datum is readable from the stored frames, the keys are gone",
    run: async (ctx) => {
      const [during, after] = await Promise.all([eraseCase(ctx, true), eraseCase(ctx, false)]);
      const worst = FAILING_VERDICTS.includes(during.verdict) ? during : after;
      return {
        verdict: worst.verdict,
        observed: `${during.observed} | ${after.observed}`,
        runs: [...during.runs, ...after.runs],
      };
    },
  },
  {
    name: "forged_signature",
    invariants: [4],
    expected:
      "an assignment whose signature does not verify is refused (signature_invalid); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-forged");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = ctx.forge.assignment(
          ctx.forge.proposal(run, echo(ctx)),
          ctx.policyDigest,
          "light",
          NONE,
        );
        const payload = encode(a.message);
        const sig = ctx.signer("router").signBytes(payload);
        const at = Math.floor(ctx.random() * sig.length);
        sig[at] = (sig[at] ?? 0) ^ 0xff;
        await ctx.forge.publish(
          subjectFor("router", "tier_assigned", run),
          encodeFrame({ kid: ctx.signer("router").kid, sig, payload }),
        );
      });
    },
  },
  {
    name: "wrong_role_signature",
    invariants: [2, 4],
    expected: "a reviewer key signing a tier assignment is refused (role_mismatch); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-role");
      return refusalAttack(ctx, run, "executor", async () => {
        const key = reviewerKey(ctx);
        const a = ctx.forge.assignment(
          ctx.forge.proposal(run, echo(ctx)),
          ctx.policyDigest,
          "light",
          NONE,
          {
            as: key,
            role: "router",
          },
        );
        await ctx.forge.publish(subjectFor("router", "tier_assigned", run), a.bytes);
      });
    },
  },
  {
    name: "replay_within_run",
    invariants: [4],
    expected:
      "the same signed approval stored twice counts once (message_replayed); quorum of two not met",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-replay");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = await assign(ctx, run, "full", TWO);
        const v = ctx.forge.verdict(a, reviewerKey(ctx));
        await ctx.forge.send("reviewer", "verdict", run, v.bytes, v.message.id);
        await ctx.forge.send("reviewer", "verdict", run, v.bytes, `replay-${v.message.id}`);
      });
    },
  },
  {
    name: "replay_across_runs",
    invariants: [1, 4],
    expected: "an approval from one run replayed into another authorises nothing there",
    run: async (ctx) => {
      const source = ctx.uniqueRun("lab-xsrc");
      const run = ctx.uniqueRun("lab-xrun");
      const args = transferArgs(ctx);
      const key = reviewerKey(ctx);
      const a = await assign(ctx, source, "standard", ONE, { args });
      const v = ctx.forge.verdict(a, key);
      await ctx.forge.send("reviewer", "verdict", source, v.bytes);
      const r = await refusalAttack(ctx, run, "executor", async () => {
        await assign(ctx, run, "standard", ONE, { args });
        await ctx.forge.send("reviewer", "verdict", run, v.bytes, `replay-${v.message.id}`);
      });
      return { ...r, runs: [source, run] };
    },
  },
  {
    name: "duplicate_reviewer",
    invariants: [2],
    expected: "two approvals from one key count once (duplicate_reviewer); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-dupe");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = await assign(ctx, run, "full", TWO);
        const key = reviewerKey(ctx);
        await ctx.forge.send("reviewer", "verdict", run, ctx.forge.verdict(a, key).bytes);
        await ctx.forge.send("reviewer", "verdict", run, ctx.forge.verdict(a, key).bytes);
      });
    },
  },
  {
    name: "missing_reviewer",
    invariants: [1],
    expected:
      "one approval where the tier needs two: refused when the review window ends (quorum_not_met)",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-quorum");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = await assign(ctx, run, "full", TWO);
        await ctx.forge.send(
          "reviewer",
          "verdict",
          run,
          ctx.forge.verdict(a, reviewerKey(ctx)).bytes,
        );
      });
    },
  },
  {
    name: "wrong_digest",
    invariants: [1],
    expected:
      "an approval bound to another action's digest is refused (digest_mismatch); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-digest");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = await assign(ctx, run, "standard", ONE);
        const other = ctx.forge.assignment(
          ctx.forge.proposal(run, { args: { from: "alice", to: "bob", amount: 900 } }),
          ctx.policyDigest,
          "standard",
          ONE,
        );
        await ctx.forge.send(
          "reviewer",
          "verdict",
          run,
          ctx.forge.verdict(a, reviewerKey(ctx), { digest: other.message.body.digest }).bytes,
        );
      });
    },
  },
  {
    name: "expired_message",
    invariants: [4],
    expected: "an assignment past its expiry is refused (message_expired); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-expired");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = ctx.forge.assignment(
          ctx.forge.proposal(run, echo(ctx)),
          ctx.policyDigest,
          "light",
          NONE,
          {
            issuedAt: Date.now() - 120_000 - Math.floor(ctx.random() * 60_000),
            ttlMs: 60_000,
          },
        );
        await ctx.forge.publish(subjectFor("router", "tier_assigned", run), a.bytes);
      });
    },
  },
  {
    name: "future_message",
    invariants: [4],
    expected: "an assignment issued beyond the tolerated clock skew is refused; no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-future");
      return refusalAttack(ctx, run, "executor", async () => {
        const a = ctx.forge.assignment(
          ctx.forge.proposal(run, echo(ctx)),
          ctx.policyDigest,
          "light",
          NONE,
          {
            issuedAt: Date.now() + 60_000 + Math.floor(ctx.random() * 60_000),
          },
        );
        await ctx.forge.publish(subjectFor("router", "tier_assigned", run), a.bytes);
      });
    },
  },
  {
    name: "oversized_frame",
    invariants: [4],
    expected: "a frame over the size limit is refused (frame_oversized); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-big");
      return refusalAttack(ctx, run, "executor", async () => {
        const size = 300 * 1024 + Math.floor(ctx.random() * 100 * 1024);
        await ctx.forge.publish(
          subjectFor("router", "tier_assigned", run),
          new Uint8Array(size).fill(7),
        );
      });
    },
  },
  {
    name: "malformed_frame",
    invariants: [4],
    expected: "bytes that are not a frame are refused (frame_malformed); no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-malformed");
      return refusalAttack(ctx, run, "executor", async () => {
        const junk = Uint8Array.from({ length: 4 + Math.floor(ctx.random() * 60) }, () =>
          Math.floor(ctx.random() * 256),
        );
        junk[0] = 0xc1; // never valid msgpack: the frame cannot decode whatever follows
        await ctx.forge.publish(subjectFor("router", "tier_assigned", run), junk);
      });
    },
  },
  {
    name: "flood",
    invariants: [4, 12],
    expected: "a burst of junk frames is refused and a valid light step after it still executes",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-flood");
      const n = FLOOD_MIN + Math.floor(ctx.random() * FLOOD_MIN);
      await Promise.all(
        Array.from({ length: n }, () =>
          ctx.forge.publish(
            subjectFor("router", "tier_assigned", run),
            Uint8Array.from([0xc1, 0, 1]),
          ),
        ),
      );
      await assign(ctx, run, "light", NONE, echo(ctx));
      const { f, timedOut } = await settle(ctx, run, (x) => x.effects > 0);
      const refused = codes(f.rejections, "executor");
      if (f.effects === 0)
        return {
          verdict: timedOut ? "stuck" : "silent",
          observed: `${n} junk frames; the valid step after them did not run`,
          runs: [run],
        };
      if (refused.length === 0)
        return { verdict: "silent", observed: `${n} junk frames without a refusal`, runs: [run] };
      return {
        verdict: "defended",
        observed: `${n} junk frames refused (${refused.join(", ")}); the valid step ran`,
        runs: [run],
      };
    },
  },
  {
    name: "tier_downgrade",
    invariants: [3, 10],
    expected:
      "a transfer the policy puts in standard, assigned light by the real router key: refused; no effect",
    run: async (ctx) => {
      const run = ctx.uniqueRun("lab-downgrade");
      return refusalAttack(ctx, run, "executor", async () => {
        await assign(ctx, run, "light", NONE);
      });
    },
  },
  {
    name: "events_after_close",
    invariants: [11],
    expected:
      "an execution re-signed by the executor key after run_closed: the verifier refuses it, the audit fails",
    run: async (ctx) => {
      if (!ctx.destructive)
        return {
          verdict: "not_available",
          observed: "changes a run's audit: embedded stack only",
          runs: [],
        };
      const { run, events } = await ctx.cleanRun();
      const stored = eventOf(events, ".step_executed.");
      const m = ctx.registry.open(stored.data).message as MessageOf<"step_executed">;
      const forged = ctx.forge.seal("executor", {
        ...m,
        id: `lab-after-${run}`,
        issuedAt: Date.now(),
        expiresAt: Date.now() + 60_000,
        body: { ...m.body, result: { forged: true } } as never,
      });
      const seq = await ctx.forge.publish(stored.subject, forged);
      const { f } = await settle(ctx, run, (x) =>
        codes(x.rejections, "verifier").includes("run_closed"),
      );
      const report = auditEvents(ctx.registry, run, await readRun(ctx.bus, run));
      const refused = codes(f.rejections, "verifier");
      const named = !report.ok && report.firstBad?.seq === seq;
      return {
        verdict:
          named && refused.length > 0
            ? "defended"
            : named || refused.length > 0
              ? "silent"
              : "breached",
        observed: `verifier refused: ${refused.join(", ") || "nothing"}; audit ${report.ok ? "passed" : `failed at #${report.firstBad?.seq ?? "?"}`}`,
        runs: [run],
      };
    },
  },
  {
    name: "purged_run",
    invariants: [11],
    expected: "a closed run purged from the stream is named by `trias audit --all`",
    run: async (ctx) => {
      if (!ctx.destructive)
        return {
          verdict: "not_available",
          observed: "purges a run: embedded stack only",
          runs: [],
        };
      const { run } = await ctx.cleanRun({ fresh: true });
      await ctx.bus.purge({ filter: runFilter(run) });
      const all = await auditAll(ctx.bus, ctx.registry);
      const named = all.missing.some((m) => m.run === run);
      return {
        verdict: named ? "defended" : "silent",
        observed: named ? "audit --all names it missing" : "audit --all did not notice",
        runs: [run],
      };
    },
  },
  {
    name: "consumer_hijack",
    invariants: [10],
    expected:
      "a reviewer's NATS credentials cannot delete or take over the executor's durable consumer",
    run: async (ctx) => {
      const creds = ctx.natsCredentials("reviewer-1");
      const victim = ctx.durablesOf("executor")[0];
      if (!creds || !victim || !ctx.destructive)
        return {
          verdict: "not_available",
          observed: "the stack does not run NATS users the lab knows (embedded stack only)",
          runs: [],
        };
      const thief = await ctx.connectAs(creds);
      const did: string[] = [];
      try {
        // Taking the durable's name with another filter would divert the executor's work.
        try {
          await thief.ensureConsumer(victim, { filter: "trias.reviewer.verdict.*" });
          did.push(`changed ${victim}`);
        } catch {
          // refused: what the invariant wants
        }
        try {
          if (await thief.deleteConsumer(victim)) did.push(`deleted ${victim}`);
        } catch {
          // refused
        }
      } finally {
        await thief.drain().catch(() => undefined);
      }
      // The executor recreates a durable it lost (shared/bus); the lab waits for it so the
      // attacks after this one meet a whole stack.
      if (did.length > 0) {
        const deadline = Date.now() + ctx.timeoutMs;
        while (Date.now() < deadline && !(await ctx.bus.consumerInfo(victim)))
          await new Promise((r) => setTimeout(r, POLL_MS));
      }
      return did.length > 0
        ? { verdict: "breached", observed: `as reviewer-1: ${did.join("; ")}`, runs: [] }
        : { verdict: "defended", observed: `the server refused both on ${victim}`, runs: [] };
    },
  },
];

/**
 * The least number of junk frames in a flood (the seed adds up to as many again).
 * @default 40
 */
const FLOOD_MIN = 40;

/** Seeded generator (mulberry32): the same `--seed` replays the same trials. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
