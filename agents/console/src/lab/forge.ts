import type { Bus } from "@trias/bus";
import {
  PROTOCOL_VERSION,
  decode,
  decodeFrame,
  proposalDigest,
  subjectFor,
  subjectOf,
  type BodyOf,
  type Kind,
  type MessageOf,
  type ReviewRequirement,
  type Role,
  type Tier,
} from "@trias/protocol";
import type { Signer } from "@trias/signing";

/**
 * Builds and publishes signed messages as any identity whose key it holds: the adversary's hand
 * in `trias lab` (docs/lab.md) and in the tests. It ships with the console because the lab does.
 */
export class Forge {
  readonly #bus: Bus;
  readonly #signer: (name: string) => Signer;
  constructor(bus: Bus, signer: (name: string) => Signer) {
    this.#bus = bus;
    this.#signer = signer;
  }

  envelope<K extends Kind>(
    as: string,
    kind: K,
    f: {
      run: string;
      step: number | null;
      attempt?: number;
      body: BodyOf<K>;
      issuedAt?: number;
      ttlMs?: number;
      id?: string;
      role?: string;
    },
  ): MessageOf<K> {
    const s = this.#signer(as);
    const issuedAt = f.issuedAt ?? Date.now();
    return {
      v: PROTOCOL_VERSION,
      id: f.id ?? `forge-${Math.random().toString(36).slice(2)}-${Date.now().toString(36)}`,
      kind,
      run: f.run,
      step: f.step,
      attempt: f.attempt ?? 0,
      sender: s.kid,
      role: f.role ?? s.role,
      issuedAt,
      expiresAt: issuedAt + (f.ttlMs ?? 60_000),
      trace: null,
      body: f.body,
    } as MessageOf<K>;
  }

  seal(as: string, m: MessageOf<Kind>): Uint8Array {
    return this.#signer(as).seal(m);
  }

  async publish(subject: string, bytes: Uint8Array, msgId?: string): Promise<number> {
    const r = await this.#bus.publish(subject, bytes, {
      msgId: msgId ?? `raw-${Math.random().toString(36).slice(2)}`,
    });
    return r.seq;
  }

  proposal(
    run: string,
    o: {
      step?: number;
      attempt?: number;
      tool?: string;
      args?: Record<string, unknown>;
      index?: number;
      total?: number;
    } = {},
  ): { bytes: Uint8Array; message: MessageOf<"step_proposed"> } {
    const message = this.envelope("proposer", "step_proposed", {
      run,
      step: o.step ?? 0,
      attempt: o.attempt ?? 0,
      body: {
        tool: o.tool ?? "ledger.transfer",
        args: (o.args ?? { from: "alice", to: "bob", amount: 5 }) as never,
        rationale: "test",
        expected: "test",
        index: o.index ?? o.step ?? 0,
        total: o.total ?? 1,
        replanOf: null,
        usage: null,
      },
    });
    return { bytes: this.seal("proposer", message), message };
  }

  assignment(
    proposal: { bytes: Uint8Array; message: MessageOf<"step_proposed"> },
    policyDigest: string,
    tier: Tier,
    requires: ReviewRequirement,
    o: { as?: string; issuedAt?: number; ttlMs?: number; role?: string; digest?: string } = {},
  ): { bytes: Uint8Array; message: MessageOf<"tier_assigned"> } {
    const p = proposal.message;
    const digest =
      o.digest ??
      proposalDigest({
        tool: p.body.tool,
        args: p.body.args,
        run: p.run,
        step: p.step ?? 0,
        attempt: p.attempt,
        policyDigest,
      });
    const message = this.envelope(o.as ?? "router", "tier_assigned", {
      run: p.run,
      step: p.step,
      attempt: p.attempt,
      ...(o.issuedAt !== undefined ? { issuedAt: o.issuedAt } : {}),
      ...(o.ttlMs !== undefined ? { ttlMs: o.ttlMs } : {}),
      ...(o.role ? { role: o.role } : {}),
      body: {
        proposal: proposal.bytes,
        digest,
        policyDigest,
        environment: "test",
        tier,
        score: 0,
        explanation: ["forged by test"],
        requires,
        escalatedFrom: null,
        denied: null,
      },
    });
    return { bytes: this.seal(o.as ?? "router", message), message };
  }

  verdict(
    assignment: { bytes: Uint8Array; message: MessageOf<"tier_assigned"> },
    as: string,
    o: {
      decision?: "approve" | "reject";
      digest?: string;
      strategy?: "rules" | "human";
      id?: string;
    } = {},
  ): { bytes: Uint8Array; message: MessageOf<"verdict"> } {
    const a = assignment.message;
    const message = this.envelope(as, "verdict", {
      run: a.run,
      step: a.step,
      attempt: a.attempt,
      ...(o.id ? { id: o.id } : {}),
      body: {
        digest: o.digest ?? a.body.digest,
        assignment: assignment.bytes,
        decision: o.decision ?? "approve",
        strategy: o.strategy ?? "rules",
        reasons: ["test"],
      },
    });
    return { bytes: this.seal(as, message), message };
  }

  async send(
    role: "router" | "reviewer" | "human" | "proposer" | "console",
    kind: Kind,
    run: string,
    bytes: Uint8Array,
    msgId?: string,
  ): Promise<number> {
    return this.publish(this.#subject(role, kind, run, bytes), bytes, msgId);
  }

  /** Where the real sender would publish these bytes (an assignment asking for review has its own token). */
  #subject(role: Role, kind: Kind, run: string, bytes: Uint8Array): string {
    try {
      const m = decode(decodeFrame(bytes).payload) as { kind?: unknown; body?: unknown };
      if (m.kind === kind && kind === "tier_assigned")
        return subjectOf(role, kind, run, m.body as BodyOf<"tier_assigned">);
    } catch {
      // Not a frame (the test sends garbage on purpose): the kind's own subject.
    }
    return subjectFor(role, kind, run);
  }
}
