import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LEASES_BUCKET } from "@trias/bus";
import { auditEvents, defaultAgents, processName, readRun, type AgentSpec } from "@trias/console";
import type { MessageOf } from "@trias/protocol";
import { LeaseTableSchema, type LeaseTable } from "@trias/runtime";
import { waitFor } from "@trias/testing";
import { cliAsAdmin, startHarness, type Harness } from "./helpers/harness.js";

// Two replicas of every role on one server (docs/scaling.md, section 2): runs are split by
// partition between them, each partition handled by one replica at a time, so no effect is
// doubled and a run's messages are handled in order; a replica killed mid-run has its
// partitions taken over (with what it left unhandled replayed) and every run completes.
const LEASE_MS = 3_000;
const FIRST = defaultAgents(2);
const SECOND: AgentSpec[] = FIRST.map((a) => ({ ...a, replica: 2 }));

describe("replicas", () => {
  let h: Harness;

  beforeAll(async () => {
    h = await startHarness({
      agents: [...FIRST, ...SECOND],
      env: { TRIAS_LEASE_MS: String(LEASE_MS) },
      readyTimeoutMs: 90_000,
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function tables(): Promise<Map<string, LeaseTable>> {
    const kv = await h.bus.kv(LEASES_BUCKET);
    const out = new Map<string, LeaseTable>();
    for (const a of FIRST) {
      const e = await kv.get(a.name);
      if (e && e.length > 0) out.set(a.name, LeaseTableSchema.parse(e.json()));
    }
    return out;
  }

  /** Every identity's partitions owned by exactly these replicas, each its share. */
  async function spreadOver(replicas: string[]): Promise<void> {
    await waitFor(
      `every identity's partitions held by replicas ${replicas.join(", ")}`,
      async () => {
        const t = await tables();
        if (t.size < FIRST.length) return false;
        for (const table of t.values()) {
          const owners = table.partitions.map((p) => p.owner);
          const share = Math.ceil(owners.length / replicas.length);
          for (const r of replicas)
            if (owners.filter((o) => o === r).length !== share) return false;
        }
        return true;
      },
      60_000,
      200,
    );
  }

  async function transfers(n: number, label: string): Promise<string[]> {
    return Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const { run } = await h.client.submit({
          goal: `replicas ${label} ${i}`,
          program: "transfer",
          input: { from: "treasury", to: "carol", amount: 1 },
          requestedBy: "test",
        });
        return run;
      }),
    );
  }

  /** Every run completed, each transfer in the ledger once, every trace audits clean. */
  async function completedOnce(runs: string[], carolBefore: number): Promise<void> {
    const closed = await h.client.waitForClose(runs, 120_000);
    for (const run of runs)
      expect(closed.get(run)?.body.outcome, `${run}: ${closed.get(run)?.body.reason}`).toBe(
        "completed",
      );
    const { accounts, applied } = (await h.ledger.read()).state;
    expect(accounts["carol"]?.balance).toBe(carolBefore + runs.length);
    for (const run of runs) {
      expect(Object.keys(applied).filter((k) => k.startsWith(`${run}:`))).toEqual([`${run}:1:0`]);
      const executed = (await h.trace(run))
        .map((o) => o.message)
        .filter((m): m is MessageOf<"step_executed"> => m.kind === "step_executed");
      expect(executed.map((e) => e.body.effectId)).toEqual([`${run}:0:0`, `${run}:1:0`]);
      const report = auditEvents(h.registry, run, await readRun(h.bus, run));
      expect(report.problems, run).toEqual([]);
      expect(report.violations, run).toEqual([]);
    }
  }

  /** The runs a replica handled a message of, from its log's "handling" lines. */
  function runsHandledBy(agent: AgentSpec): Set<string> {
    const log = readFileSync(join(h.stack.opts.logDir, `${processName(agent)}.log`), "utf8");
    const runs = new Set<string>();
    for (const line of log.split("\n")) {
      if (!line.includes('"msg":"handling"')) continue;
      runs.add((JSON.parse(line) as { run: string }).run);
    }
    return runs;
  }

  it("replicas - two of each role split the runs: each run's messages handled by one replica of each identity, each effect once, every trace audits clean", async () => {
    await spreadOver(["1", "2"]);
    const carol = (await h.ledger.read()).state.accounts["carol"]?.balance ?? 0;
    const runs = await transfers(16, "split");
    await completedOnce(runs, carol);
    for (const [i, first] of FIRST.entries()) {
      const a = runsHandledBy(first);
      const b = runsHandledBy(SECOND[i]!);
      // Reviewers see only steps that ask for review: transfers may need none.
      if (first.role !== "reviewer") {
        for (const run of runs)
          expect(
            Number(a.has(run)) + Number(b.has(run)),
            `${run} handled by one replica of ${first.name}`,
          ).toBe(1);
        // The work is shared: each replica handled some of the runs.
        expect(runs.filter((r) => a.has(r)).length, first.name).toBeGreaterThan(0);
        expect(runs.filter((r) => b.has(r)).length, processName(SECOND[i]!)).toBeGreaterThan(0);
      } else for (const run of runs) expect(a.has(run) && b.has(run), run).toBe(false);
    }
    // The operator sees it: each identity's two replicas, half the partitions each.
    const cli = cliAsAdmin(h, ["replicas", "--json"]);
    expect(cli.code, cli.out).toBe(0);
    const rows = JSON.parse(cli.out) as {
      identity: string;
      replicas: string[];
      partitions: Record<string, number>;
    }[];
    expect(rows.map((r) => r.identity).sort(), cli.out).toEqual(FIRST.map((a) => a.name).sort());
    for (const r of rows) {
      expect(r.replicas, r.identity).toEqual(["1", "2"]);
      expect(r.partitions, r.identity).toEqual({ "1": 8, "2": 8 });
    }
  });

  it("replicas - one of each role killed mid-run: the others take its partitions over and every run completes, each effect once", async () => {
    const carol = (await h.ledger.read()).state.accounts["carol"]?.balance ?? 0;
    const runs = await transfers(12, "kill");
    // Killed while the runs are under way: the first run's first step has been executed.
    await waitFor(
      "a first step executed",
      async () => (await h.trace(runs[0]!)).some((o) => o.message.kind === "step_executed"),
      30_000,
      50,
    );
    await Promise.all(SECOND.map((a) => h.stack.kill(processName(a))));
    await completedOnce(runs, carol);
    await spreadOver(["1"]);
  });

  it("replicas - a replica started again gets its share back, and runs submitted during the hand-over complete", async () => {
    for (const a of SECOND) h.stack.spawnAgent(a);
    const carol = (await h.ledger.read()).state.accounts["carol"]?.balance ?? 0;
    // Submitted while the first replicas may still be draining half their partitions.
    const runs = await transfers(12, "rejoin");
    await spreadOver(["1", "2"]);
    await completedOnce(runs, carol);
  });
});
