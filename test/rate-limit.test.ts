import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { RunIndex, defaultAgents, newRunId } from "@trias/console";
import { LEASES_BUCKET, RATES_BUCKET } from "@trias/bus";
import { LeaseTableSchema, partitionOf } from "@trias/runtime";
import { waitFor } from "@trias/testing";
import { foldRun } from "@trias/runstate";
import { policyVariant, startHarness, type Harness } from "./helpers/harness.js";

/** ledger.balance: one call per window, delayed; ledger.refund: one per ten minutes, denied. */
const WINDOW_MS = 3_000;

// The whole stack on a real nats-server under a policy with tight rate limits: the router
// holds steps back through the bus's delayed redelivery, or denies them when told to.
describe("rate limits", () => {
  let h: Harness;
  beforeAll(async () => {
    const file = policyVariant("dev", "rate-test", (doc) => {
      const tools = doc["tools"] as Record<string, Record<string, unknown>>;
      tools["ledger.balance"]!["rateLimit"] = { calls: 1, windowMs: WINDOW_MS };
      tools["ledger.refund"]!["rateLimit"] = { calls: 1, windowMs: 600_000, onExceed: "deny" };
    });
    h = await startHarness({ policyFile: file });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("rate limit - steps over the limit wait for the window and every run completes", async () => {
    const accounts = ["alice", "bob", "carol"];
    const runs: string[] = [];
    for (const account of accounts)
      runs.push(
        (
          await h.client.submit({
            goal: "balance",
            program: "balance-check",
            input: { account },
            requestedBy: "test",
          })
        ).run,
      );
    const closed = await h.client.waitForClose(runs, 60_000);
    for (const r of runs) expect(closed.get(r)?.body.outcome, r).toBe("completed");

    // Each step was assigned once, never denied, and the assignments (the router's signed
    // time) came one window apart at the least: the later steps waited for the rate.
    const assigned: number[] = [];
    const explanations: string[] = [];
    for (const r of runs) {
      const tiers = (await h.trace(r))
        .map((o) => o.message)
        .filter((m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned");
      expect(tiers).toHaveLength(1);
      expect(tiers[0]?.body.denied, r).toBeNull();
      assigned.push(tiers[0]!.issuedAt);
      explanations.push(...tiers[0]!.body.explanation);
    }
    assigned.sort((a, b) => a - b);
    for (let i = 1; i < assigned.length; i++)
      // The limiter records the decision time, the message is signed just after it: half a
      // window leaves room for that without letting two assignments into one window.
      expect(assigned[i]! - assigned[i - 1]!).toBeGreaterThan(WINDOW_MS / 2);
    // The router said so in its log, and the later assignments say how long they waited.
    const routerLog = readdirSync(h.stack.opts.logDir)
      .filter((f) => f.startsWith("router"))
      .map((f) => readFileSync(join(h.stack.opts.logDir, f), "utf8"))
      .join("\n");
    expect(routerLog).toMatch(/step held back by its tool's rate limit/);
    expect(explanations.join("\n")).toMatch(
      /rate limit: held back \d+\.\d s for ledger\.balance's rate limit before this decision/,
    );

    // Each held step says so in its run's trace, signed by the router, so a run never waits
    // without a visible reason: read up to the hold, the run is open and `trias runs` says why.
    let holds = 0;
    for (const r of runs) {
      const stored = await h.bus.readAll(`trias.*.*.${r}`);
      const opened = stored.map((x) => ({ x, o: h.registry.open(x.data) }));
      const at = opened.findIndex(({ o }) => o.message.kind === "step_held");
      expect(
        foldRun(
          opened.map(({ x, o }) => ({
            seq: x.seq,
            subject: x.subject,
            frame: x.data,
            message: o.message,
          })),
        ).violations,
        r,
      ).toEqual([]);
      if (at < 0) continue;
      holds++;
      const held = opened[at]!.o.message as MessageOf<"step_held">;
      expect(held.role).toBe("router");
      expect(held.body.until).toBeGreaterThan(held.issuedAt);
      const index = new RunIndex(h.registry);
      for (const { x } of opened.slice(0, at + 1)) index.add(x);
      const row = index.get(r)!;
      expect(row.outcome).toBeNull();
      expect(index.why(row)).toMatch(
        /^step 0 held back by ledger\.balance's rate limit until \d{4}-.*: /,
      );
      const upTo = foldRun(
        opened.slice(0, at + 1).map(({ x, o }) => ({
          seq: x.seq,
          subject: x.subject,
          frame: x.data,
          message: o.message,
        })),
      );
      expect(upTo.held?.tool).toBe("ledger.balance");
    }
    // Three calls, one per window: at least the later two waited.
    expect(holds).toBeGreaterThanOrEqual(2);
  });

  it("rate limit - onExceed deny still refuses the step over the limit, with the reason", async () => {
    const runs: string[] = [];
    for (const reference of ["r-1", "r-2"])
      runs.push(
        (
          await h.client.submit({
            goal: "refund",
            program: "refund",
            input: { account: "alice", amount: 5, reference },
            requestedBy: "test",
          })
        ).run,
      );
    const closed = await h.client.waitForClose(runs, 60_000);
    const outcomes = runs.map((r) => closed.get(r)?.body.outcome).sort();
    expect(outcomes).toEqual(["completed", "rejected"]);
    const rejected = runs.find((r) => closed.get(r)?.body.outcome === "rejected")!;
    expect(closed.get(rejected)?.body.reason).toMatch(
      /rate limit: ledger\.refund allows 1 call\(s\) per 600 s in rate-test, 1 in the window; retry in \d+ s/,
    );
    const kinds = (await h.trace(rejected)).map((o) => o.message.kind);
    expect(kinds).not.toContain("step_executed");
  });
});

// Two router replicas (docs/scaling.md, section 2) count one window: a limit of two calls
// admits two steps across the deployment, not two per router.
describe("rate limits across router replicas", () => {
  let h: Harness;
  beforeAll(async () => {
    const file = policyVariant("dev", "rate-shared", (doc) => {
      const tools = doc["tools"] as Record<string, Record<string, unknown>>;
      tools["ledger.balance"]!["rateLimit"] = { calls: 2, windowMs: 600_000, onExceed: "deny" };
    });
    h = await startHarness({
      policyFile: file,
      agents: [...defaultAgents(2), { name: "router", role: "router", replica: 2 }],
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("rate limit - a limit of two calls admits two steps across two routers, with runs in both routers' partitions", async () => {
    const kv = await h.bus.kv(LEASES_BUCKET);
    const owners = await waitFor(
      "the router's partitions split between its two replicas",
      async () => {
        const e = await kv.get("router");
        if (!e || e.length === 0) return undefined;
        const t = LeaseTableSchema.parse(e.json());
        const o = t.partitions.map((p) => p.owner);
        return o.includes("1") && o.includes("2") ? o : undefined;
      },
      30_000,
      100,
    );
    // Three runs in each replica's partitions, so a window per router would admit four.
    const runs: string[] = [];
    const per = new Map<string, number>();
    while (runs.length < 6) {
      const run = newRunId();
      const owner = owners[partitionOf(run, owners.length)]!;
      if ((per.get(owner) ?? 0) >= 3) continue;
      per.set(owner, (per.get(owner) ?? 0) + 1);
      runs.push(run);
    }
    await Promise.all(
      runs.map((run, i) =>
        h.client.submit(
          {
            goal: "balance",
            program: "balance-check",
            input: { account: ["alice", "bob", "carol"][i % 3]! },
            requestedBy: "test",
          },
          run,
        ),
      ),
    );
    const closed = await h.client.waitForClose(runs, 60_000);
    const outcomes = runs.map((r) => closed.get(r)?.body.outcome);
    expect(outcomes.filter((o) => o === "completed")).toHaveLength(2);
    expect(outcomes.filter((o) => o === "rejected")).toHaveLength(4);
    for (const r of runs.filter((r) => closed.get(r)?.body.outcome === "rejected"))
      expect(closed.get(r)?.body.reason).toMatch(
        /rate limit: ledger\.balance allows 2 call\(s\) per 600 s in rate-shared, 2 in the window/,
      );
    // The window is one key of the rates bucket, which outlives a router's restart.
    const window = await (await h.bus.kv(RATES_BUCKET)).get("ledger.balance");
    expect((window?.json() as { calls: unknown[] }).calls).toHaveLength(2);
  });
});
