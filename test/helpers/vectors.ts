import { createHash, createPrivateKey, createPublicKey } from "node:crypto";
import {
  encode,
  frameRef,
  proposalDigest,
  subjectOf,
  CHECKPOINT_TYP,
  TRACE_FORMAT,
} from "@trias/protocol";
import type { BodyOf, Kind, MessageOf, ReceiptCheckpoint, Role } from "@trias/protocol";
import { ANCHOR_GENESIS, anchorLink, chainLinks, computeReceipt } from "@trias/runstate";
import { KeyRegistry, Signer, type Jwks, type PublicKeyEntry } from "@trias/signing";

/**
 * The test vectors of docs/receipts.md: a small run with fixed keys, times and ids, so every
 * byte (Ed25519 signatures are deterministic) is the same on every machine. Written to
 * docs/vectors/ by `TRIAS_WRITE_VECTORS=1 pnpm exec vitest run test/vectors.test.ts`.
 */
export const VECTOR_RUN = "vector-run-1";
const T0 = 1_700_000_001_000;
const ADDED = 1_700_000_000_000;
const ROUTER_REVOKED = 1_700_000_100_000;
const POLICY = createHash("sha256").update("trias vector policy").digest("hex");
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");

const IDS: { name: string; role: Role }[] = [
  { name: "console", role: "console" },
  { name: "proposer", role: "proposer" },
  { name: "router", role: "router" },
  { name: "reviewer-1", role: "reviewer" },
  { name: "executor", role: "executor" },
  { name: "verifier", role: "verifier" },
];

function identity(name: string, role: Role): { signer: Signer; pub: PublicKeyEntry } {
  const seed = createHash("sha256").update(`trias vector key ${name}`).digest();
  const priv = createPrivateKey({
    key: Buffer.concat([PKCS8_ED25519, seed]),
    format: "der",
    type: "pkcs8",
  });
  const x = String(createPublicKey(priv).export({ format: "jwk" }).x);
  const kid = `${name}:vector`;
  const signer = new Signer({
    name,
    role,
    kid,
    jwk: { kty: "OKP", crv: "Ed25519", x, d: seed.toString("base64url") },
  });
  const pub: PublicKeyEntry = {
    kty: "OKP",
    crv: "Ed25519",
    x,
    kid,
    alg: "EdDSA",
    use: "sig",
    name,
    role,
    status: name === "router" ? "revoked" : "active",
    addedAt: ADDED,
    ...(name === "router" ? { revokedAt: ROUTER_REVOKED } : {}),
  };
  return { signer, pub };
}

export interface Vectors {
  registry: Jwks;
  trace: Uint8Array;
  checkpoint: string;
  expected: {
    run: string;
    receipt: { head: string; events: number; firstSeq: number; lastSeq: number; links: string[] };
    closeSeq: number;
    refused: number[];
    after: { seq: number; kind: string; verdict: "late" | "record" | "tampering" }[];
    keySet: { digest: string; at: number };
    checkpoint: { n: number; prev: string; anchor: string };
  };
}

export async function buildVectors(): Promise<Vectors> {
  const ids = new Map(IDS.map((i) => [i.name, identity(i.name, i.role)]));
  const registry: Jwks = { keys: [...ids.values()].map((i) => i.pub) };
  const reg = new KeyRegistry(registry);
  const events: {
    seq: number;
    subject: string;
    data: Uint8Array;
    headers: Record<string, string>;
    timestampMs: number;
  }[] = [];
  let n = 0;
  const emit = <K extends Kind>(
    who: string,
    kind: K,
    seq: number,
    step: number | null,
    body: BodyOf<K>,
  ): Uint8Array => {
    const id = ids.get(who)!;
    n++;
    const at = T0 + n * 10;
    const m = {
      v: 1,
      id: `${VECTOR_RUN}-${String(n).padStart(4, "0")}`,
      kind,
      run: VECTOR_RUN,
      step,
      attempt: 0,
      sender: id.signer.kid,
      role: id.signer.role,
      issuedAt: at,
      expiresAt: at + 60_000,
      trace: null,
      body,
    } as MessageOf<K>;
    const data = id.signer.seal(m);
    events.push({
      seq,
      subject: subjectOf(id.signer.role, kind, VECTOR_RUN, body),
      data,
      headers: {},
      timestampMs: at + 1,
    });
    return data;
  };
  emit("console", "task_submitted", 41, null, {
    goal: "pay bob 1",
    program: "transfer",
    input: { from: "alice", to: "bob", amount: 1 },
    requestedBy: "vectors",
  });
  // A frame whose signature does not verify (one payload byte changed), then its refusal.
  const good = emit("console", "task_submitted", 43, null, {
    goal: "forged",
    program: "transfer",
    input: {},
    requestedBy: "vectors",
  });
  const bad = Uint8Array.from(good);
  bad[bad.length - 2] = (bad[bad.length - 2] ?? 0) ^ 0x01;
  (events[events.length - 1] as { data: Uint8Array }).data = bad;
  emit("verifier", "message_rejected", 44, null, {
    code: "signature_invalid",
    reason: "signature does not match the payload",
    subject: `trias.console.task_submitted.${VECTOR_RUN}`,
    seq: 43,
    messageId: null,
    sender: null,
    by: "verifier",
  });
  const args = { from: "alice", to: "bob", amount: 1 };
  const proposal = emit("proposer", "step_proposed", 46, 0, {
    tool: "ledger.transfer",
    args,
    rationale: "the task asks for it",
    expected: "bob has 1 more",
    index: 0,
    total: 1,
    replanOf: null,
    usage: null,
  });
  const digest = proposalDigest({
    tool: "ledger.transfer",
    args,
    run: VECTOR_RUN,
    step: 0,
    attempt: 0,
    policyDigest: POLICY,
  });
  const assignmentBody: BodyOf<"tier_assigned"> = {
    proposal,
    digest,
    policyDigest: POLICY,
    environment: "vector",
    tier: "light",
    score: 0.1,
    explanation: ["vector"],
    requires: { reviewers: 0, strategies: [], human: false },
    escalatedFrom: null,
    denied: null,
  };
  const assignment = emit("router", "tier_assigned", 47, 0, assignmentBody);
  emit("executor", "step_executed", 49, 0, {
    digest,
    tool: "ledger.transfer",
    args,
    tier: "light",
    outcome: "ok",
    result: { from: 99, to: 1 },
    error: null,
    approvals: [],
    effectId: `${VECTOR_RUN}:0:0`,
    evidence: { assignment: frameRef(assignment), approvals: [] },
    compensationOf: null,
    index: 0,
    total: 1,
  });
  emit("verifier", "step_verified", 50, 0, {
    digest,
    tool: "ledger.transfer",
    verdict: "passed",
    checks: [{ name: "balances moved", ok: true, detail: "bob +1" }],
    compensationOf: null,
    index: 0,
    total: 1,
  });
  const covered = events.map((e) => ({ seq: e.seq, subject: e.subject, frame: e.data }));
  const receipt = computeReceipt(covered, VECTOR_RUN);
  const links = chainLinks(covered, VECTOR_RUN);
  const closeAt = T0 + (n + 1) * 10;
  const keySet = { digest: reg.keySetDigest(closeAt), at: closeAt };
  emit("verifier", "run_closed", 52, null, {
    outcome: "completed",
    reason: "all 1 step(s) executed and verified",
    steps: 1,
    receipt: { ...receipt, links, keySet, policy: { digests: [POLICY], environment: "vector" } },
    topology: null,
  });
  // A slow reviewer's verdict after the close: reported after the receipt, a warning.
  emit("reviewer-1", "verdict", 53, 0, {
    digest,
    assignment,
    decision: "approve",
    strategy: "rules",
    reasons: ["late"],
  });
  const anchor = anchorLink(ANCHOR_GENESIS, 1, VECTOR_RUN, 52, receipt.head);
  const cp: ReceiptCheckpoint = {
    v: 1,
    n: 1,
    run: VECTOR_RUN,
    closeSeq: 52,
    outcome: "completed",
    receipt: { ...receipt, keySet, policy: { digests: [POLICY], environment: "vector" } },
    prev: ANCHOR_GENESIS,
    anchor,
    at: closeAt + 5,
  };
  const checkpoint = await ids.get("verifier")!.signer.signJws(cp, CHECKPOINT_TYP);
  const trace = encode({ format: TRACE_FORMAT, run: VECTOR_RUN, events, checkpoint });
  return {
    registry,
    trace,
    checkpoint,
    expected: {
      run: VECTOR_RUN,
      receipt: {
        head: receipt.head,
        events: receipt.events,
        firstSeq: receipt.firstSeq,
        lastSeq: receipt.lastSeq,
        links,
      },
      closeSeq: 52,
      refused: [43],
      after: [{ seq: 53, kind: "verdict", verdict: "late" }],
      keySet,
      checkpoint: { n: 1, prev: ANCHOR_GENESIS, anchor },
    },
  };
}
