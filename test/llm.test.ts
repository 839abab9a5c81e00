import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { loadPolicy } from "@trias/policy";
import { ChatServer, toolCalls, type ChatRequest } from "./helpers/chat-server.js";
import { policyVariant, startHarness, type Harness } from "./helpers/harness.js";

// A planner that pays as asked, through tool calling: first check the balance, then transfer
// (and finish beside it). Replans offer another payer.
function answer(req: ChatRequest): unknown {
  const system = req.messages[0]?.content ?? "";
  const userText = req.messages[1]?.content ?? "{}";
  const user = JSON.parse(userText) as {
    done_so_far?: unknown[];
    failed_step_to_replace?: unknown;
  };
  if (system.startsWith("You plan") && userText.includes("from dave")) {
    if (user.failed_step_to_replace)
      return toolCalls(
        "dave cannot pay; alice covers it",
        ["ledger__transfer", { from: "alice", to: "bob", amount: 50 }],
        ["finish_task", { summary: "paid" }],
      );
    return toolCalls(
      "pay bob from dave",
      ["ledger__transfer", { from: "dave", to: "bob", amount: 50 }],
      ["finish_task", { summary: "paid" }],
    );
  }
  if (system.startsWith("You plan")) {
    if ((user.done_so_far ?? []).length === 0)
      return toolCalls("check funds", ["ledger__balance", { account: "alice" }]);
    return toolCalls(
      "pay bob as asked",
      ["ledger__transfer", { from: "alice", to: "bob", amount: 5 }],
      ["finish_task", { summary: "paid" }],
    );
  }
  return { decision: "approve", reasons: ["the transfer matches the stated purpose"] };
}

describe("llm path", () => {
  let h: Harness;
  let chat: ChatServer;
  let policyDigest: string;

  beforeAll(async () => {
    chat = await new ChatServer(answer).start();
    // Writes need a rules reviewer and an llm reviewer.
    const file = policyVariant("dev", "llm-test", (doc) => {
      doc.tiers["standard"] = {
        ...doc.tiers["standard"],
        reviewers: 2,
        strategies: ["rules", "llm"],
      };
    });
    policyDigest = loadPolicy(file).digest;
    const llmEnv = {
      TRIAS_LLM_BASE_URL: chat.url,
      TRIAS_LLM_API_KEY: "test-key",
      TRIAS_LLM_MODEL: "test-model",
    };
    h = await startHarness({
      policyFile: file,
      agents: [
        { name: "proposer", role: "proposer", env: llmEnv },
        { name: "router", role: "router" },
        { name: "reviewer-1", role: "reviewer" },
        {
          name: "reviewer-2",
          role: "reviewer",
          env: { ...llmEnv, TRIAS_REVIEWER_STRATEGY: "llm" },
        },
        { name: "executor", role: "executor" },
        { name: "verifier", role: "verifier" },
      ],
    });
  });
  afterAll(async () => {
    await h?.close();
    await chat?.close();
  });

  it("llm - a freeform task is planned by the model step by step and reviewed by a rules and an llm reviewer", async () => {
    const { run } = await h.client.submit({
      goal: "Pay bob 5 from alice; receipt to jane.doe@example.com",
      program: "freeform",
      input: {
        apiKey: "sk-test-SECRET-123456",
        customer_email: "jane.doe@example.com",
        card: "4111 1111 1111 1111",
        reference: "inv-77",
      },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([run], 30_000);
    expect(closed.get(run)?.body.outcome).toBe("completed");
    const msgs = (await h.trace(run)).map((o) => o.message);
    expect(
      msgs
        .filter((m): m is MessageOf<"step_executed"> => m.kind === "step_executed")
        .map((m) => m.body.tool),
    ).toEqual(["ledger.balance", "ledger.transfer"]);
    const verdicts = msgs.filter((m): m is MessageOf<"verdict"> => m.kind === "verdict");
    expect(new Set(verdicts.map((v) => v.body.strategy))).toEqual(new Set(["rules", "llm"]));
    expect(chat.requests.length).toBeGreaterThanOrEqual(3);
    // The model's spend travels with each proposal, where the router's budget counts it.
    const proposals = msgs.filter(
      (m): m is MessageOf<"step_proposed"> => m.kind === "step_proposed",
    );
    for (const p of proposals) expect(p.body.usage?.inputTokens).toBeGreaterThan(0);
  });

  it("llm - a refused action is replanned by the model, never retried as it was", async () => {
    const { run } = await h.client.submit({
      goal: "Pay bob 50 from dave",
      program: "freeform",
      input: {},
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([run], 30_000);
    expect(closed.get(run)?.body.outcome).toBe("completed");
    const msgs = (await h.trace(run)).map((o) => o.message);
    const rec = msgs.filter(
      (m): m is MessageOf<"recovery_decided"> => m.kind === "recovery_decided",
    );
    expect(rec.map((r) => r.body.action)).toEqual(["replan"]);
    const proposals = msgs.filter(
      (m): m is MessageOf<"step_proposed"> => m.kind === "step_proposed",
    );
    expect(proposals.map((p) => [p.attempt, p.body.args["from"]])).toEqual([
      [0, "dave"],
      [1, "alice"],
    ]);
    expect(proposals[1]?.body.replanOf).toBe(rec[0]?.body.digest);
    expect(rec[0]?.body.avoid).toEqual([rec[0]?.body.digest]);
    const executed = msgs.filter(
      (m): m is MessageOf<"step_executed"> => m.kind === "step_executed",
    );
    expect(executed.map((e) => e.body.outcome)).toEqual(["error", "ok"]);
  });

  it("llm - the model sees only its projection: no secrets, no personal data, no governance metadata", () => {
    const all = chat.requests.join("\n");
    for (const leak of [
      "sk-test-SECRET",
      "jane.doe@example.com",
      "4111 1111",
      policyDigest,
      "policyDigest",
      "reviewer-1",
      "reviewer-2",
      '"tier"',
      "requires",
      "sender",
    ]) {
      expect(all.includes(leak), `the model was shown ${leak}`).toBe(false);
    }
    expect(all).toContain("inv-77");
    expect(all).toContain("ledger.transfer");
  });
});
