import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MAX_FRAME_BYTES, subjectFor, type MessageOf } from "@trias/protocol";
import { isResultRef } from "@trias/runtime";
import { policyVariant, startHarness, waitForKind, type Harness } from "./helpers/harness.js";

// Every run reaches a terminal state whatever its payload sizes (DESIGN.md, 12): a step whose
// execution record could not fit a frame is refused before its effect, and a result too
// large for its record travels by digest, its bytes in the executor's bucket.
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

  it("payloads - a 200 KB argument is refused before any effect and the run closes with the reason", async () => {
    const run = await submit("noop.echo", { blob: "x".repeat(200 * 1024) });
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("rejected");
    expect(closed.body.reason).toMatch(/would not fit its execution record/);
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(0);
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
