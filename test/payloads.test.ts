import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_FRAME_BYTES, subjectFor, type MessageOf } from "@trias/protocol";
import { isResultRef } from "@trias/runtime";
import {
  approversOf,
  cliAsAdmin,
  policyVariant,
  startHarness,
  waitForKind,
  type Harness,
} from "./helpers/harness.js";

// Every run reaches a terminal state whatever its payload sizes (DESIGN.md, 12): no frame
// embeds the arguments more than once (the execution record names the frames that authorised
// it by digest), a step whose frames could not fit is refused before its effect, and a
// result too large for its record travels by digest, its bytes in the executor's bucket.
describe("payload sizes", () => {
  let h: Harness;

  beforeAll(async () => {
    const file = policyVariant("dev", "payloads", (doc) => {
      (doc["tools"] as Record<string, unknown>)["noop.blob"] = {
        op: "read",
        objects: { count: 0 },
        domains: ["test"],
      };
    });
    h = await startHarness({ policyFile: file });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function submit(tool: string, args: Record<string, unknown>) {
    const { run } = await h.client.submit({
      goal: "payload size",
      program: "steps",
      input: { steps: [{ tool, args }] as never },
      requestedBy: "test",
    });
    return run;
  }

  it.each([
    ["noop.echo", "light"],
    ["noop.batch", "full"],
  ])(
    "payloads - a 200 KB argument to %s runs under its %s tier's quorum and the run closes completed",
    async (tool, tier) => {
      const run = await submit(tool, { blob: "x".repeat(200 * 1024) });
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome, closed.body.reason).toBe("completed");
      const [stored] = await h.bus.readAll(subjectFor("executor", "step_executed", run));
      const exec = h.registry.open(stored!.data).message as MessageOf<"step_executed">;
      expect(exec.body.tier).toBe(tier);
      // The record carries the arguments once and names the frames that authorised it by
      // digest: no bigger than the arguments and a few KB.
      expect(stored!.data.length).toBeLessThan(200 * 1024 + 4 * 1024);
      const approvers = await approversOf(h, exec);
      expect(approvers).toHaveLength(tier === "full" ? 2 : 0);
      expect(approvers.every((a) => a.startsWith("reviewer-"))).toBe(true);
      const verified = await waitForKind(h, run, "step_verified");
      expect(verified.body.verdict).toBe("passed");
      expect(verified.body.checks.filter((c) => !c.ok)).toEqual([]);
      const audit = cliAsAdmin(h, ["audit", run]);
      expect(audit.code, audit.out).toBe(0);
    },
  );

  it.each([
    // The step's verdicts, which embed its assignment, could not fit: the router denies it.
    ["noop.batch", 245, /would not fit the frames that carry them/],
    // Its proposal would leave its assignment no room: the proposer refuses the task.
    ["noop.echo", 255, /the step_proposed .* would be \d+ bytes, over the limit/],
  ])(
    "payloads - an argument too large for the frames that carry it (%s, %i KB) is refused before any effect and the run closes with the reason",
    async (tool, kb, reason) => {
      const run = await submit(tool, { blob: "x".repeat(kb * 1024) });
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome).toBe("rejected");
      expect(closed.body.reason).toMatch(reason);
      expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(0);
    },
  );

  it("payloads - a next step whose argument is too large to send escalates its run to a human with the reason", async () => {
    const { run } = await h.client.submit({
      goal: "payload size",
      program: "steps",
      input: {
        steps: [
          { tool: "noop.echo", args: { n: 1 } },
          { tool: "noop.echo", args: { blob: "x".repeat(250 * 1024) } },
        ] as never,
      },
      requestedBy: "test",
    });
    const escalated = await waitForKind(
      h,
      run,
      "recovery_decided",
      30_000,
      (m) => m.body.action === "escalate",
    );
    expect(escalated.body.reason).toMatch(
      /the proposer could not propose the step after step 0 \(frame_oversized: .* bytes, over the limit/,
    );
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(1);
  });

  it("payloads - an effect with a 200 KB argument is undone by a rollback and the run closes rolled back", async () => {
    const blob = "x".repeat(200 * 1024);
    const { run } = await h.client.submit({
      goal: "payload size",
      program: "steps",
      input: {
        steps: [
          { tool: "noop.write", args: { blob } },
          { tool: "flaky.write", args: { key: `payloads-${Date.now()}`, passFromAttempt: 99 } },
        ] as never,
      },
      requestedBy: "test",
    });
    const closed = await waitForKind(h, run, "run_closed", 40_000);
    expect(closed.body.outcome, closed.body.reason).toBe("rolled_back");
    const trace = (await h.trace(run)).map((o) => o.message);
    // The order names the effect it undoes by digest; its compensation repeats the arguments
    // once (noop.write is undone by an echo of them), so both frames fit.
    const order = trace.find(
      (m): m is MessageOf<"recovery_decided"> =>
        m.kind === "recovery_decided" && m.body.compensation?.step === 0,
    );
    expect(order?.body.evidence).toMatch(/^[0-9a-f]{64}$/);
    const undo = trace.find(
      (m): m is MessageOf<"step_executed"> =>
        m.kind === "step_executed" && m.step === 0 && m.body.compensationOf !== null,
    );
    expect(undo?.body.tool).toBe("noop.echo");
    expect((undo?.body.args as { blob: string }).blob).toHaveLength(blob.length);
  });

  it.each([250 * 1024, 400 * 1024])(
    "payloads - a result of %i bytes completes its run; past what a record holds it travels by digest and the verifier reads it back whole",
    async (bytes) => {
      const run = await submit("noop.blob", { bytes });
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome).toBe("completed");
      const [stored] = await h.bus.readAll(subjectFor("executor", "step_executed", run));
      expect(stored?.data.length).toBeLessThan(MAX_FRAME_BYTES);
      const exec = h.registry.open(stored!.data).message as MessageOf<"step_executed">;
      // A result that cannot fit beside its evidence goes by reference, never a refused record.
      if (bytes > MAX_FRAME_BYTES) expect(isResultRef(exec.body.result)).toBe(true);
      if (isResultRef(exec.body.result))
        expect(exec.body.result["trias.result"].bytes).toBeGreaterThan(bytes);
      else expect((exec.body.result as { blob: string }).blob).toHaveLength(bytes);
      const verified = await waitForKind(h, run, "step_verified");
      expect(verified.body.checks.find((c) => c.name === "whole result")).toMatchObject({
        ok: true,
        detail: `${bytes} characters`,
      });
    },
  );
});
