import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { waitFor } from "@trias/testing";
import { cliAsPersonAsync, policyVariant, startHarness, type Harness } from "./helpers/harness.js";

/**
 * The `trias` CLI as an operator runs it: its own process, the console's or the person's own
 * NATS user (the credentials beside the key), never the admin.
 */
const cli = cliAsPersonAsync;

const messages = async (h: Harness, run: string) => (await h.trace(run)).map((o) => o.message);
const waitingForHuman = (h: Harness, run: string) =>
  waitFor(
    "a step waiting for a human",
    async () =>
      (await messages(h, run)).find(
        (m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned" && m.body.requires.human,
      ),
    20_000,
  );

describe("human approval", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ environment: "staging" });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("human - a human-tier step waits across a restart of every process and the server, then executes once on approval", async () => {
    const { run } = await h.client.submit({
      goal: "close dave",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "test",
    });
    const a = await waitingForHuman(h, run);
    expect(a.step).toBe(1);
    expect(a.body.tier).toBe("full");
    // Both reviewers approve, and still nothing runs: the human is missing.
    await waitFor("two reviewer verdicts", async () =>
      (await messages(h, run)).filter((m) => m.kind === "verdict").length >= 2 ? true : undefined,
    );
    await new Promise((r) => setTimeout(r, 500));
    expect((await messages(h, run)).some((m) => m.kind === "step_executed" && m.step === 1)).toBe(
      false,
    );

    await h.stack.killAll();
    await h.stack.server?.restart();
    await h.stack.startAll();

    const pending = await cli(h, ["pending", run]);
    expect(pending.out).toMatch(new RegExp(`${run} step 1 .*ledger.close_account`));
    const approved = await cli(h, ["approve", run, "1"]);
    expect(approved.out).toMatch(/approved .* step 1: ledger.close_account/);
    expect(approved.code).toBe(0);

    const closed = await waitFor(
      "the run to close",
      async () =>
        (await messages(h, run)).find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed"),
      30_000,
    );
    expect(closed.body.outcome).toBe("completed");
    const exec = (await messages(h, run)).filter(
      (m): m is MessageOf<"step_executed"> => m.kind === "step_executed" && m.step === 1,
    );
    expect(exec).toHaveLength(1);
    const human = (await h.trace(run)).find(
      (o) => o.message.kind === "verdict" && o.key.role === "human",
    );
    expect(human?.key.name).toBe("human-operator");
    expect((await h.ledger.read()).state.accounts["dave"]?.open).toBe(false);
  });

  it("human - a rejection ends the step with the human's reason", async () => {
    const { run } = await h.client.submit({
      goal: "close carol",
      program: "close-account",
      input: { account: "carol" },
      requestedBy: "test",
    });
    await waitingForHuman(h, run);
    const rejected = await cli(h, [
      "reject",
      run,
      "1",
      "--reason",
      "carol still has open invoices",
    ]);
    expect(rejected.code).toBe(0);
    const closed = await waitFor(
      "the run to close",
      async () =>
        (await messages(h, run)).find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed"),
      20_000,
    );
    expect(closed.body.outcome).toBe("rejected");
    expect(closed.body.reason).toMatch(/carol still has open invoices/);
    expect((await h.ledger.read()).state.accounts["carol"]?.open).toBe(true);
  });

  it("human - approving a step that is not waiting says why", async () => {
    const r = await cli(h, ["approve", "no-such-run", "1"]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/is not waiting for a human/);
  });
});

describe("human approval timeout", () => {
  let h: Harness;
  beforeAll(async () => {
    const file = policyVariant("staging", "staging-fast", (doc) => {
      for (const t of Object.values(doc.tiers)) t["humanTimeoutMs"] = 1500;
    });
    h = await startHarness({ policyFile: file });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("human - no decision within the policy's timeout rejects the step, with the reason", async () => {
    const { run } = await h.client.submit({
      goal: "close dave",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "test",
    });
    const closed = await waitFor(
      "the run to close",
      async () =>
        (await messages(h, run)).find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed"),
      30_000,
    );
    expect(closed.body.outcome).toBe("rejected");
    expect(closed.body.reason).toMatch(/human approval missing within 1500 ms/);
    expect((await messages(h, run)).some((m) => m.kind === "step_executed" && m.step === 1)).toBe(
      false,
    );
  });
});
