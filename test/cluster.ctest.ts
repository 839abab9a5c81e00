// A 3-node NATS cluster (three local nats-server processes routed on loopback) with the
// trace stream and every bucket at R3 (`trias setup --replicas 3`), every agent a process.
// The stream's leader is killed mid-run; it comes back; then the new leader is killed.
// With three replicas a quorum is two nodes, so "then a second node" means a second
// leader loss after the first node has rejoined: two nodes down at once would stop every
// write by design (docs/scaling.md). Throughout: no accepted task lost, effects exactly
// once, every run's trace audits clean.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  auditEvents,
  ConsoleClient,
  defaultAgents,
  durablesOf,
  newRunId,
  processName,
  Stack,
} from "@trias/console";
import { LeaseTableSchema } from "@trias/runtime";
import {
  EXECUTOR_BUCKETS,
  KeySwap,
  LEASES_BUCKET,
  createExact,
  isRevisionConflict,
  isTransientFailure,
  swapSoleKey,
} from "@trias/bus";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { startTestCluster, waitFor, type TestCluster } from "@trias/testing";
import { subjectFor } from "@trias/protocol";
import { LEDGER_BUCKET, Ledger, account } from "@trias/tools";

const TRANSFER = { from: "alice", to: "bob", amount: 1 };
const TRANSFER_TOOL = "ledger.transfer";
/** How often, and how far apart, the test retries its own call through a failover. */
const TRANSIENT_ATTEMPTS = 40;
const TRANSIENT_PAUSE_MS = 500;
/** Ledger effects applied at once from one process (five were enough to lose one on R3). */
const CONCURRENT_EFFECTS = 20;
/** A scratch bucket, and how many rounds of how many concurrent swaps it takes. */
const SWAP_BUCKET = "cluster_test_swap";
const SWAP_ROUNDS = 20;
const SWAP_WRITERS = 5;
/** A scratch bucket for exclusive claims (createExact), one fresh key per round. */
const CLAIM_BUCKET = "cluster_test_claim";
/** How long every run gets to close, and how often the test looks (a bound, not a measure). */
const CLOSE_WAIT_MS = 120_000;
const CLOSE_POLL_MS = 250;
/** A scratch bucket of several keys for KeySwap. */
const KEY_SWAP_BUCKET = "cluster_test_key_swap";
/** Runs submitted while two replicas of each role run (two more after one of each dies). */
const REPLICA_RUNS = 8;
/** Runs in flight when the first agent is killed (one more is submitted after each kill). */
const ROLE_KILL_RUNS = 4;

let cluster: TestCluster;
let stack: Stack;
let client: ConsoleClient;
let registry: KeyRegistry;
let ledger: Ledger;
const dir = mkdtempSync(join(tmpdir(), "trias-cluster-test-"));

beforeAll(async () => {
  stack = await Stack.start({
    keyDir: join(dir, "keys"),
    logDir: join(dir, "logs"),
    replicas: 3,
    // A shorter ack wait brings back sooner what an agent had in hand when its node died.
    env: { TRIAS_ACK_WAIT_MS: "5000" },
    natsFactory: async (users) => {
      cluster = await startTestCluster({ users, logDir: join(dir, "logs") });
      return {
        url: cluster.urls,
        restart: () => Promise.resolve(),
        stop: () => cluster.stop(),
      };
    },
  });
  registry = KeyRegistry.load(stack.registryFile);
  client = new ConsoleClient(
    stack.admin,
    Signer.load(join(dir, "keys", keyFileName("console"))),
    registry,
  );
  ledger = new Ledger(await stack.admin.kv(LEDGER_BUCKET));
}, 120_000);

/** Whether a test failed: its servers' and agents' logs are kept for a post-mortem. */
let failed = false;
afterEach((ctx) => {
  if (ctx.task.result?.state === "fail") failed = true;
});

afterAll(async () => {
  await stack?.stop();
  // TRIAS_KEEP=1 keeps them after a pass too.
  if (failed || process.env["TRIAS_KEEP"])
    process.stderr.write(`cluster test: servers' and agents' logs kept in ${join(dir, "logs")}\n`);
  else rmSync(dir, { recursive: true, force: true });
}, 60_000);

/**
 * The test's own reads and writes meet what the agents meet while a leader is elected
 * (timeouts, no responders): retried as the agents retry them (isTransientFailure).
 */
async function retrying<T>(fn: () => Promise<T>): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!isTransientFailure(e) || attempt >= TRANSIENT_ATTEMPTS) throw e;
      await new Promise((r) => setTimeout(r, TRANSIENT_PAUSE_MS));
    }
  }
}

async function alice(): Promise<number> {
  return retrying(async () => (await ledger.read()).state.accounts["alice"]!.balance);
}

/** The server name of the trace stream's leader, once one is elected. */
async function streamLeader(): Promise<string> {
  return waitFor(
    "a stream leader",
    async () => (await stack.admin.streamInfo()).cluster?.leader || undefined,
    30_000,
    200,
  );
}

/**
 * Submit `n` transfers one after another. A submit that returned was accepted (stored on a
 * quorum). One that failed in a failover may or may not have been stored: the test looks for
 * it in the trace and submits the same run again only if it is not there.
 */
async function submit(n: number): Promise<string[]> {
  const runs: string[] = [];
  for (let i = 0; i < n; i++) {
    const run = newRunId();
    await retrying(async () => {
      // A message get, which the stream's leader answers: a read consumer (R1) could be
      // placed on the node that is down and time out (module comment).
      if (await stack.admin.lastBySubject(subjectFor("console", "task_submitted", run))) return;
      await client.submit(
        { goal: "cluster test", program: "transfer", input: TRANSFER, requestedBy: "cluster-test" },
        run,
      );
    });
    runs.push(run);
  }
  return runs;
}

/**
 * Each run's close outcome, once every run is closed or CLOSE_WAIT_MS has passed. Read by
 * message gets on each run's run_closed subject (the stream's leader answers), not by a
 * consumer: a read consumer (R1) is placed on any of the stream's three nodes, the one down
 * included, and nats-server 2.9 serves an R1 consumer from its own node's copy of the stream
 * (docs/scaling.md, section 1). A run still open at the end comes with what the trace holds
 * of it and what each durable consumer holds, so a failure says where the run stopped.
 */
async function closedRuns(runs: readonly string[]): Promise<Map<string, string>> {
  const closed = new Map<string, string>();
  const deadline = Date.now() + CLOSE_WAIT_MS;
  while (closed.size < runs.length && Date.now() < deadline) {
    for (const run of runs) {
      if (closed.has(run)) continue;
      const m = await retrying(() =>
        stack.admin.lastBySubject(subjectFor("verifier", "run_closed", run)),
      );
      const opened = m ? registry.open(m.data).message : null;
      if (opened?.kind === "run_closed") closed.set(run, opened.body.outcome);
    }
    if (closed.size < runs.length) await new Promise((r) => setTimeout(r, CLOSE_POLL_MS));
  }
  for (const run of runs.filter((r) => !closed.has(r))) {
    const { messages } = await retrying(() => stack.admin.readRun(run));
    const kinds = messages.map((m) => `${m.seq}:${registry.open(m.data).message.kind}`);
    const held: string[] = [];
    for (const a of defaultAgents())
      for (const d of durablesOf(a)) {
        const ci = await retrying(() => stack.admin.consumerInfo(d));
        if (ci && ci.num_pending + ci.num_ack_pending > 0)
          held.push(`${d}: ${ci.num_pending} pending, ${ci.num_ack_pending} unacked`);
      }
    expect.fail(
      `${run} open after ${CLOSE_WAIT_MS} ms; its trace: ${kinds.join(" ")}; durables: ${held.join("; ") || "none holding anything"}; the servers' and agents' logs are kept in ${join(dir, "logs")}`,
    );
  }
  return closed;
}

/**
 * Every run closed (none lost), each closed as completed or rolled back (a step whose late
 * verification failed is compensated: docs/scaling.md), every trace audits clean; returns
 * how many completed, which is what the ledger must have moved by (each effect once).
 */
async function closedAndClean(runs: readonly string[]): Promise<number> {
  const closed = await closedRuns(runs);
  const outcomes = runs.map((r) => closed.get(r) ?? "open");
  for (const [i, o] of outcomes.entries())
    expect(["completed", "rolled_back"], `${runs[i]} closed as ${o}`).toContain(o);
  const { applied } = (await retrying(() => ledger.read())).state;
  for (const run of runs) {
    const events = (await retrying(() => stack.admin.readRun(run))).messages.map((m) => ({
      seq: m.seq,
      subject: m.subject,
      data: m.data,
    }));
    const report = auditEvents(registry, run, events);
    expect(report.ok, `${run}: ${JSON.stringify(report)}`).toBe(true);
    // Every transfer the executor reported done is in the ledger as reported. Money conserved
    // alone would not show an effect acknowledged, then overwritten, then done again on a
    // retry (what lost ledger updates looked like: docs/scaling.md, section 1).
    for (const e of events) {
      const m = registry.open(e.data).message;
      if (m.kind !== "step_executed" || m.body.tool !== TRANSFER_TOOL) continue;
      if (m.body.outcome !== "ok") continue;
      expect(applied[m.body.effectId], `${m.body.effectId} in the ledger`).toEqual(m.body.result);
    }
  }
  return outcomes.filter((o) => o === "completed").length;
}

describe("a 3-node NATS cluster at R3", () => {
  it("replicates the trace stream and every bucket on three nodes", async () => {
    const si = await stack.admin.streamInfo();
    expect(si.config.num_replicas).toBe(3);
    expect(si.cluster?.replicas).toHaveLength(2);
    for (const b of EXECUTOR_BUCKETS) {
      const kv = await stack.admin.streamInfo(`KV_${b}`);
      expect(kv.config.num_replicas, b).toBe(3);
    }
  });

  it("stores exactly one of concurrent compare-and-sets from one revision (swapSoleKey at R3)", async () => {
    await stack.admin.kv(SWAP_BUCKET, { create: true, replicas: 3 });
    // Opened, as the agents open their buckets: reads go to the stream leader. The handle
    // `create` returns reads with direct gets, which any replica may answer before it has
    // applied the last write (a stale revision made all five swaps of a round conflict once).
    const kv = await stack.admin.kv(SWAP_BUCKET);
    for (let round = 0; round < SWAP_ROUNDS; round++) {
      const r = (await kv.get("state"))?.revision ?? (await kv.put("state", new Uint8Array()));
      const tries = await Promise.allSettled(
        Array.from({ length: SWAP_WRITERS }, (_, i) =>
          swapSoleKey(kv, "state", new TextEncoder().encode(`${round}.${i}`), r),
        ),
      );
      const stored = tries.filter((t) => t.status === "fulfilled");
      expect(
        stored,
        `round ${round}: ${tries.map((t) => (t.status === "rejected" ? String(t.reason) : "stored")).join("; ")}`,
      ).toHaveLength(1);
      for (const t of tries)
        if (t.status === "rejected")
          expect(isRevisionConflict(t.reason), String(t.reason)).toBe(true);
    }
  });

  it("stores exactly one of concurrent exclusive claims of one key (createExact at R3)", async () => {
    await stack.admin.kv(CLAIM_BUCKET, { create: true, replicas: 3 });
    const kv = await stack.admin.kv(CLAIM_BUCKET);
    for (let round = 0; round < SWAP_ROUNDS; round++) {
      const key = `slot.${round}`;
      const tries = await Promise.allSettled(
        Array.from({ length: SWAP_WRITERS }, (_, i) =>
          createExact(kv, key, new TextEncoder().encode(`${round}.${i}`)),
        ),
      );
      const won = tries.flatMap((t, i) => (t.status === "fulfilled" ? [{ i, rev: t.value }] : []));
      const outcomes = tries.map((t) => (t.status === "rejected" ? String(t.reason) : "stored"));
      expect(won, `round ${round}: ${outcomes.join("; ")}`).toHaveLength(1);
      for (const t of tries)
        if (t.status === "rejected")
          expect(isRevisionConflict(t.reason), String(t.reason)).toBe(true);
      // The key holds the one winner's value, at the revision it was told, and nothing else
      // was stored in the bucket (a second stored claim would have moved its last sequence).
      const e = await kv.get(key);
      expect(new TextDecoder().decode(e?.value)).toBe(`${round}.${won[0]!.i}`);
      expect(e?.revision).toBe(won[0]!.rev);
      expect((await stack.admin.streamInfo(`KV_${CLAIM_BUCKET}`)).state.last_seq).toBe(won[0]!.rev);
    }
  });

  it("stores exactly one of concurrent compare-and-sets of one key of a shared bucket (KeySwap at R3)", async () => {
    await stack.admin.kv(KEY_SWAP_BUCKET, { create: true, replicas: 3 });
    const kv = await stack.admin.kv(KEY_SWAP_BUCKET);
    const swap = await KeySwap.open(kv, stack.admin.serverVersion);
    await kv.put("another", new Uint8Array([1]));
    for (let round = 0; round < SWAP_ROUNDS; round++) {
      const read = await swap.read("table");
      const tries = await Promise.allSettled(
        Array.from({ length: SWAP_WRITERS }, (_, i) =>
          swap.write("table", new TextEncoder().encode(`${round}.${i}`), read.expect),
        ),
      );
      const won = tries.flatMap((t, i) => (t.status === "fulfilled" ? [i] : []));
      const outcomes = tries.map((t) => (t.status === "rejected" ? String(t.reason) : "stored"));
      expect(won, `round ${round}: ${outcomes.join("; ")}`).toHaveLength(1);
      for (const t of tries)
        if (t.status === "rejected")
          expect(isRevisionConflict(t.reason), String(t.reason)).toBe(true);
      const now = await swap.read("table");
      expect(new TextDecoder().decode(now.value ?? new Uint8Array())).toBe(`${round}.${won[0]}`);
    }
  });

  it("applies concurrent ledger effects from one process each once (none overwritten)", async () => {
    // Two ledgers in one process, as the executor opens one per tool pack.
    const ledgers = [ledger, new Ledger(await stack.admin.kv(LEDGER_BUCKET))];
    const before = (await ledger.read()).state.accounts;
    const ids = Array.from({ length: CONCURRENT_EFFECTS }, (_, i) => `${newRunId()}:0:${i}`);
    const results = await Promise.all(
      ids.map((id, i) =>
        ledgers[i % ledgers.length]!.apply(id, (s) => {
          account(s, "treasury").balance -= 1;
          account(s, "dave").balance += 1;
          return { id };
        }),
      ),
    );
    expect(results.filter((r) => r.replayed)).toHaveLength(0);
    const after = (await ledger.read()).state;
    for (const id of ids) expect(after.applied[id], `${id} recorded`).toEqual({ id });
    expect(after.accounts["dave"]!.balance).toBe(before["dave"]!.balance + ids.length);
    expect(after.accounts["treasury"]!.balance).toBe(before["treasury"]!.balance - ids.length);
  });

  it("loses the stream leader mid-run, gets it back, then loses the new leader: nothing lost, each effect once", async () => {
    const start = await alice();
    const first = await submit(6);
    // Mid-run: killed once the first of them has taken effect.
    await waitFor(
      "a first effect",
      async () => ((await alice()) < start ? true : undefined),
      60_000,
    );
    const leader1 = await streamLeader();
    await cluster.kill(leader1);
    const leader2 = await waitFor(
      "a new leader",
      async () => {
        const l = await streamLeader();
        return l !== leader1 ? l : undefined;
      },
      60_000,
    );
    const second = await submit(4);
    await cluster.start(leader1);
    // The rejoined node has caught up before the second loss, so two of three stay current.
    await waitFor(
      `${leader1} current again`,
      async () => {
        const si = await stack.admin.streamInfo();
        const peer = si.cluster?.replicas?.find((r) => r.name === leader1);
        return peer?.current ? true : undefined;
      },
      60_000,
      200,
    );
    const third = await submit(4);
    await cluster.kill(leader2);
    await waitFor(
      "a third leader",
      async () => {
        const l = await streamLeader();
        return l !== leader2 ? l : undefined;
      },
      60_000,
    );
    const fourth = await submit(4);
    const runs = [...first, ...second, ...third, ...fourth];
    const completed = await closedAndClean(runs);
    expect(await alice()).toBe(start - completed * TRANSFER.amount);
    await cluster.start(leader2);
  }, 300_000);

  it("loses each role's process mid-run, one after another: every run completes, each effect once", async () => {
    const start = await alice();
    const runs = await submit(ROLE_KILL_RUNS);
    await waitFor(
      "a first effect",
      async () => ((await alice()) < start ? true : undefined),
      60_000,
    );
    // Each agent is SIGKILLed while runs are in flight (what it held comes back after the ack
    // wait), and stays down until a run has reached it and waits in one of its durable
    // consumers: the run is mid-way at that role when the process comes back.
    for (const a of defaultAgents()) {
      await stack.kill(a.name);
      runs.push(...(await submit(1)));
      await waitFor(
        `work waiting for ${a.name}`,
        async () => {
          for (const d of durablesOf(a)) {
            const ci = await retrying(() => stack.admin.consumerInfo(d));
            if (ci && ci.num_pending + ci.num_ack_pending > 0) return true;
          }
          return undefined;
        },
        60_000,
        100,
      );
      stack.spawnAgent(a);
    }
    await stack.waitReady();
    const closed = await closedRuns(runs);
    for (const run of runs)
      expect(closed.get(run) ?? "open", `${run} after the kills`).toBe("completed");
    const completed = await closedAndClean(runs);
    expect(await alice()).toBe(start - completed * TRANSFER.amount);
  }, 300_000);

  it("runs two replicas of each role, then loses one of each mid-run: every run completes, each effect once", async () => {
    const second = defaultAgents().map((a) => ({ ...a, replica: 2 }));
    for (const a of second) stack.spawnAgent(a);
    // Each identity's partitions split between its two replicas (docs/scaling.md, section 2).
    const leases = await stack.admin.kv(LEASES_BUCKET);
    await waitFor(
      "every identity's partitions split between two replicas",
      async () => {
        for (const a of defaultAgents()) {
          const e = await retrying(() => leases.get(a.name));
          if (!e || e.length === 0) return undefined;
          const owners = LeaseTableSchema.parse(e.json()).partitions.map((p) => p.owner);
          if (owners.filter((o) => o === "2").length !== owners.length / 2) return undefined;
        }
        return true;
      },
      60_000,
      200,
    );
    const start = await alice();
    const runs = await submit(REPLICA_RUNS);
    await waitFor(
      "a first effect",
      async () => ((await alice()) < start ? true : undefined),
      60_000,
    );
    for (const a of second) await stack.kill(processName(a));
    runs.push(...(await submit(2)));
    const closed = await closedRuns(runs);
    for (const run of runs)
      expect(closed.get(run) ?? "open", `${run} after the second replicas died`).toBe("completed");
    const completed = await closedAndClean(runs);
    expect(await alice()).toBe(start - completed * TRANSFER.amount);
  }, 300_000);
});
