import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { startHarness, type Harness } from "./helpers/harness.js";

// Six agent processes (two reviewers) on a real nats-server; the test only submits tasks as
// the console and reads the signed trace back.
describe("governed run", () => {
  let h: Harness;
  beforeAll(async () => {
    // Reviewers claim steps (on by default only for llm reviewers), so a step that needs
    // one reviewer of the two gets one verdict.
    h = await startHarness({ env: { TRIAS_REVIEW_CLAIMS: "on" } });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("governed run - a light, a standard and a full step each complete end to end", async () => {
    const light = await h.client.submit({
      goal: "balance",
      program: "balance-check",
      input: { account: "alice" },
      requestedBy: "test",
    });
    const standard = await h.client.submit({
      goal: "transfer",
      program: "transfer",
      input: { from: "alice", to: "bob", amount: 25 },
      requestedBy: "test",
    });
    const full = await h.client.submit({
      goal: "payout",
      program: "payout",
      input: {
        batch: "b1",
        payouts: [
          { account: "carol", amount: 10 },
          { account: "dave", amount: 15 },
        ],
      },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([light.run, standard.run, full.run], 30_000);
    for (const r of [light.run, standard.run, full.run])
      expect(closed.get(r)?.body.outcome, r).toBe("completed");

    const tiersOf = async (run: string) =>
      (await h.trace(run))
        .map((o) => o.message)
        .filter((m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned")
        .map((m) => m.body.tier);
    expect(await tiersOf(light.run)).toEqual(["light"]);
    expect(await tiersOf(standard.run)).toEqual(["light", "standard"]);
    expect(await tiersOf(full.run)).toEqual(["light", "full"]);

    // The full step carries two approvals from two distinct reviewer keys, and the trace
    // holds both verdicts, each signed by its own reviewer identity.
    const fullTrace = await h.trace(full.run);
    const exec = fullTrace
      .map((o) => o.message)
      .find((m): m is MessageOf<"step_executed"> => m.kind === "step_executed" && m.step === 1);
    expect(exec?.body.tier).toBe("full");
    expect(new Set(exec?.body.approvals).size).toBe(2);
    const approvers = fullTrace
      .filter((o) => o.message.kind === "verdict" && o.message.step === 1)
      .map((o) => o.key.name);
    expect(new Set(approvers)).toEqual(new Set(["reviewer-1", "reviewer-2"]));
    // Every step of every run was verified, and the effects are in the ledger exactly once.
    for (const run of [light.run, standard.run, full.run]) {
      const verified = (await h.trace(run))
        .map((o) => o.message)
        .filter((m): m is MessageOf<"step_verified"> => m.kind === "step_verified");
      expect(verified.every((v) => v.body.verdict === "passed")).toBe(true);
    }
    const { state } = await h.ledger.read();
    expect(state.accounts["bob"]?.balance).toBe(525);
    expect(state.accounts["alice"]?.balance).toBe(975);
    expect(state.accounts["carol"]?.balance).toBe(260);
    expect(state.accounts["dave"]?.balance).toBe(15);
    // Each agent signs as its own process identity; the standard step, which needs one
    // reviewer, is judged by one of the two.
    const standardTrace = await h.trace(standard.run);
    const reviewers = standardTrace.filter((o) => o.message.kind === "verdict");
    expect(reviewers).toHaveLength(1);
    const signers = new Set(standardTrace.map((o) => `${o.key.role}:${o.key.name}`));
    expect(signers).toEqual(
      new Set([
        "console:console",
        "proposer:proposer",
        "router:router",
        `reviewer:${reviewers[0]?.key.name ?? "none"}`,
        "executor:executor",
        "verifier:verifier",
      ]),
    );
  });

  it("governed run - a step the policy denies never executes and closes the run as rejected", async () => {
    const r = await h.client.submit({
      goal: "too big",
      program: "transfer",
      input: { from: "treasury", to: "carol", amount: 20_000 },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([r.run], 20_000);
    expect(closed.get(r.run)?.body.outcome).toBe("rejected");
    expect(closed.get(r.run)?.body.reason).toMatch(/no-overdraft-size-transfers/);
    const kinds = (await h.trace(r.run)).map(
      (o) => `${o.message.kind}${o.message.step === null ? "" : `@${o.message.step}`}`,
    );
    expect(kinds).not.toContain("step_executed@1");
  });

  it("governed run - no secret or key material reaches any agent's log", async () => {
    // Plant: every agent holds its private key and a NATS password; run enough to log plenty.
    const r = await h.client.submit({
      goal: "transfer",
      program: "transfer",
      input: { from: "bob", to: "alice", amount: 1 },
      requestedBy: "test",
    });
    await h.client.waitForClose([r.run], 20_000);
    const secrets: string[] = [];
    for (const f of readdirSync(h.keyDir).filter((x) => x.endsWith(".key.json"))) {
      secrets.push(
        (JSON.parse(readFileSync(join(h.keyDir, f), "utf8")) as { jwk: { d: string } }).jwk.d,
      );
    }
    for (const u of h.stack.natsUsers) secrets.push(u.password);
    expect(secrets.length).toBeGreaterThanOrEqual(12);
    const logDir = h.stack.opts.logDir;
    const logs = readdirSync(logDir)
      .map((f) => readFileSync(join(logDir, f), "utf8"))
      .join("\n");
    expect(logs).toMatch(new RegExp(r.run));
    for (const secret of secrets)
      expect(logs.includes(secret), "a secret appears in the logs").toBe(false);
  });

  it("governed run - a task the proposer cannot plan closes as rejected, saying what to do", async () => {
    const r = await h.client.submit({
      goal: "anything",
      program: "freeform",
      input: {},
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([r.run], 20_000);
    expect(closed.get(r.run)?.body.outcome).toBe("rejected");
    expect(closed.get(r.run)?.body.reason).toMatch(
      /freeform tasks need a model: set TRIAS_LLM_BASE_URL/,
    );
    const unknown = await h.client.submit({
      goal: "anything",
      program: "no-such-program",
      input: {},
      requestedBy: "test",
    });
    const closed2 = await h.client.waitForClose([unknown.run], 20_000);
    expect(closed2.get(unknown.run)?.body.reason).toMatch(
      /unknown program "no-such-program": known programs are/,
    );
  });
});
