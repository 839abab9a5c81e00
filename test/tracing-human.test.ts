import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Telemetry } from "@trias/telemetry";
import type { OtlpReceiver, ReceivedSpan } from "@trias/testing";
import { cliAsAdminAsync, waitForKind, type Harness } from "./helpers/harness.js";
import { spanChain, startTracedStack, type TracedStack } from "./helpers/tracing.js";

// A person's decision is part of the run's one trace: `trias approve` and `trias cancel`
// run as their own processes (started without blocking this one, which serves the receiver), export to the same real OTLP receiver as every agent, and
// their span sits between the router's assignment and what the executor and the verifier
// then do.
describe("tracing across human decisions", () => {
  let stack: TracedStack;
  let rx: OtlpReceiver;
  let h: Harness;
  let telemetry: Telemetry;

  beforeAll(async () => {
    // The CLI processes the test starts inherit the exporter's environment and export too.
    stack = await startTracedStack({ environment: "staging" });
    ({ rx, h, telemetry } = stack);
  });
  afterAll(async () => {
    await stack?.close();
  });
  /** The run's root span, then every span of its trace once `leaf` is found with its whole chain. */
  const traceOf = async (run: string, leaf: (s: ReceivedSpan) => boolean) => {
    await telemetry.flush();
    const root = await rx.waitFor(
      (s) => s.spans.find((x) => x.name === "trias.run" && x.attributes["trias.run"] === run),
      15_000,
    );
    return rx.waitFor((s) => {
      const t = s.spans.filter((x) => x.traceId === root.traceId);
      const l = t.find(leaf);
      return l && spanChain(t, l)[0] === "trias-console:trias.run"
        ? { spans: t, leaf: l }
        : undefined;
    }, 20_000);
  };

  it("tracing - a step approved by a person with trias approve: proposer, router, the person's approval, executor and verifier in one trace", async () => {
    const { run } = await h.client.submit({
      goal: "close carol",
      program: "close-account",
      input: { account: "carol" },
      requestedBy: "test",
    });
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    const approve = await cliAsAdminAsync(h, ["approve", run, String(a.step)]);
    expect(approve.code, approve.out).toBe(0);
    expect((await waitForKind(h, run, "run_closed", 30_000)).body.outcome).toBe("completed");

    const { spans, leaf } = await traceOf(
      run,
      (s) =>
        s.serviceName === "trias-verifier" &&
        s.name === "send step_verified" &&
        s.attributes["trias.step"] === a.step,
    );
    const path = spanChain(spans, leaf);
    // In causal order: the router's assignment, the person's signed approval (the CLI
    // process), the executor handling it and running the tool, the verifier checking it.
    let i = -1;
    for (const x of [
      "trias-proposer:send step_proposed",
      "trias-router:send tier_assigned",
      "trias-console:send verdict",
      "trias-executor:process verdict",
      "trias-verifier:process step_executed",
      "trias-verifier:send step_verified",
    ]) {
      i = path.indexOf(x, i + 1);
      expect(i, `${x} in ${path.join(" > ")}`).toBeGreaterThanOrEqual(0);
    }
    // The executor handled the person's verdict itself: its span is the approval's child.
    const approvalAt = path.indexOf("trias-console:send verdict");
    expect(path[approvalAt - 1]).toBe("trias-router:send tier_assigned");
    expect(path[approvalAt + 1]).toBe("trias-executor:process verdict");
    // And ran the tool under it.
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    const tool = spans.find((s) => s.name === "tool ledger.close_account")!;
    const handling = byId.get(tool.parentSpanId)!;
    expect(handling.name).toBe("process verdict");
    expect(byId.get(handling.parentSpanId)?.name).toBe("send verdict");
    const approval = byId.get(handling.parentSpanId)!;
    expect(approval.attributes).toMatchObject({
      "trias.run": run,
      "trias.role": "human",
      "trias.agent": "human-operator",
      "trias.step": a.step,
    });
    expect(approval.kind).toBe("PRODUCER");
    // Nothing of this run went to another trace.
    expect(
      rx.spans().filter((s) => s.attributes["trias.run"] === run && s.traceId !== leaf.traceId),
    ).toEqual([]);
  });

  it("tracing - a run cancelled by a person with trias cancel: the order and the close it leads to are in the run's trace", async () => {
    const { run } = await h.client.submit({
      goal: "close dave",
      program: "close-account",
      input: { account: "dave" },
      requestedBy: "test",
    });
    await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    const cancel = await cliAsAdminAsync(h, ["cancel", run, "--reason", "not today"]);
    expect(cancel.code, cancel.out).toBe(0);
    expect((await waitForKind(h, run, "run_closed", 30_000)).body.outcome).toBe("cancelled");
    const { spans, leaf } = await traceOf(
      run,
      (s) => s.serviceName === "trias-verifier" && s.name === "send run_closed",
    );
    const path = spanChain(spans, leaf);
    expect(path).toEqual(
      expect.arrayContaining([
        "trias-console:send recovery_decided",
        "trias-verifier:process recovery_decided",
      ]),
    );
    expect(path.indexOf("trias-console:send recovery_decided")).toBeLessThan(
      path.indexOf("trias-verifier:send run_closed"),
    );
    expect(
      rx.spans().filter((s) => s.attributes["trias.run"] === run && s.traceId !== leaf.traceId),
    ).toEqual([]);
  });
});
