import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Telemetry } from "@trias/telemetry";
import type { OtlpReceiver } from "@trias/testing";
import type { Harness } from "./helpers/harness.js";
import { spanChain, startTracedStack, type TracedStack } from "./helpers/tracing.js";

// Every agent process exports OTLP/HTTP protobuf to a real receiver on loopback, which
// decodes it with the OTel proto definitions; the test submits as the console (this
// process, exporting too) and reads back one trace spanning every process.
describe("tracing", () => {
  let stack: TracedStack;
  let rx: OtlpReceiver;
  let h: Harness;
  let telemetry: Telemetry;

  beforeAll(async () => {
    stack = await startTracedStack();
    ({ rx, h, telemetry } = stack);
  });
  afterAll(async () => {
    await stack?.close();
  });

  it("tracing - one full-tier run is one trace across every process, in causal order", async () => {
    const { run } = await h.client.submit({
      goal: "payout",
      program: "steps",
      input: {
        steps: [
          {
            tool: "ledger.batch_payout",
            args: {
              batch: "t1",
              payouts: [
                { account: "bob", amount: 1 },
                { account: "carol", amount: 2 },
              ],
            },
          },
        ],
      },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([run], 30_000);
    expect(closed.get(run)?.body.outcome).toBe("completed");
    await telemetry.flush();

    const root = await rx.waitFor(
      (s) => s.spans.find((x) => x.name === "trias.run" && x.attributes["trias.run"] === run),
      15_000,
    );
    const traceId = root.traceId;
    // Each process exports on its own schedule: wait until the whole causal chain is in, from
    // the verifier's verification back to the root.
    const spans = await rx.waitFor((s) => {
      const t = s.spans.filter((x) => x.traceId === traceId);
      const leaf = t.find(
        (x) => x.serviceName === "trias-verifier" && x.name === "send step_verified",
      );
      const complete =
        leaf !== undefined &&
        spanChain(t, leaf)[0] === "trias-console:trias.run" &&
        t.some((x) => x.name === "send run_closed") &&
        t.filter((x) => x.serviceName === "trias-reviewer" && x.name === "process tier_assigned")
          .length === 2 &&
        t.some((x) => x.name === "policy.evaluate") &&
        t.some((x) => x.name === "tool ledger.batch_payout");
      return complete ? t : undefined;
    }, 20_000);

    // Every process took part in the one trace, and nothing of this run went to another trace.
    const services = new Set(spans.map((s) => s.serviceName));
    expect(services).toEqual(
      new Set([
        "trias-console",
        "trias-proposer",
        "trias-router",
        "trias-reviewer",
        "trias-executor",
        "trias-verifier",
      ]),
    );
    const reviewerInstances = new Set(
      spans.filter((s) => s.serviceName === "trias-reviewer").map((s) => s.resource["trias.agent"]),
    );
    expect(reviewerInstances.size).toBe(2);
    const elsewhere = rx
      .spans()
      .filter((s) => s.attributes["trias.run"] === run && s.traceId !== traceId);
    expect(elsewhere).toEqual([]);

    // Walk from the verifier's check back to the root: parents cross process boundaries in
    // the order submit, propose, route, review, execute, verify.
    const verify = spans.find(
      (s) => s.serviceName === "trias-verifier" && s.name === "send step_verified",
    );
    expect(verify).toBeDefined();
    const path = spanChain(spans, verify!);
    const byId = new Map(spans.map((s) => [s.spanId, s]));
    expect(path[0]).toBe("trias-console:trias.run");
    const processes = path.map((p) => p.split(":")[0]).filter((p, i, a) => p !== a[i - 1]);
    expect(processes).toEqual([
      "trias-console",
      "trias-proposer",
      "trias-router",
      "trias-reviewer",
      "trias-executor",
      "trias-verifier",
    ]);
    expect(path).toEqual(
      expect.arrayContaining([
        "trias-router:process step_proposed",
        "trias-reviewer:process tier_assigned",
        "trias-executor:process verdict",
      ]),
    );
    // Policy evaluation and the tool call are children of the handling span in their process.
    const parentOf = (name: string) => {
      const s = spans.find((x) => x.name === name);
      const p = s ? byId.get(s.parentSpanId) : undefined;
      return p ? `${p.serviceName}:${p.name}` : undefined;
    };
    expect(parentOf("policy.evaluate")).toBe("trias-router:process step_proposed");
    expect(parentOf("tool ledger.batch_payout")).toBe("trias-executor:process verdict");
    // One review span per reviewer, each a child of the router's send.
    const reviews = spans.filter(
      (s) => s.serviceName === "trias-reviewer" && s.name === "process tier_assigned",
    );
    expect(reviews).toHaveLength(2);
    expect(new Set(reviews.map((r) => byId.get(r.parentSpanId)?.name))).toEqual(
      new Set(["send tier_assigned"]),
    );

    // Attributes: OTel messaging conventions plus Trias's own.
    const tool = spans.find((s) => s.name === "tool ledger.batch_payout")!;
    expect(tool.attributes).toMatchObject({
      "trias.run": run,
      "trias.tier": "full",
      "trias.step": 0,
    });
    expect(tool.attributes["trias.policy_digest"]).toMatch(/^[0-9a-f]{64}$/);
    expect(spans.find((s) => s.name === "policy.evaluate")?.attributes).toMatchObject({
      "trias.tier": "full",
    });
    for (const r of reviews)
      expect(r.attributes).toMatchObject({
        "trias.verdict": "approve",
        "trias.tier": "full",
        "messaging.system": "nats",
      });
    expect(
      spans.find((s) => s.serviceName === "trias-verifier" && s.name === "process step_executed")
        ?.attributes,
    ).toMatchObject({ "trias.verdict": "passed" });
    for (const s of spans.filter((x) => x.kind === "CONSUMER")) {
      expect(s.attributes["messaging.destination.name"]).toMatch(
        new RegExp(`^trias\\.[a-z]+\\.[a-z_]+\\.${run}$`),
      );
      expect(s.attributes["trias.agent"]).toBeTruthy();
    }

    // The run's log lines carry the same trace id, with run and step.
    const logDir = h.stack.opts.logDir;
    const lines = readdirSync(logDir)
      .filter((f) => f.endsWith(".log") && !f.startsWith("nats"))
      .flatMap((f) => readFileSync(join(logDir, f), "utf8").split("\n"))
      .filter((l) => l.startsWith("{"))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l["run"] === run);
    expect(lines.length).toBeGreaterThanOrEqual(7);
    for (const l of lines) {
      expect(l["trace_id"]).toBe(traceId);
      expect(l["span_id"]).toMatch(/^[0-9a-f]{16}$/);
      expect(l).toHaveProperty("agent");
      expect(l).toHaveProperty("role");
      expect(l).toHaveProperty("step");
    }

    // Metrics for the run, exported by the processes that counted them.
    const steps = await rx.waitFor((s) => {
      void s;
      const pts = rx
        .metricPoints("trias.steps")
        .filter((p) => p.attributes["trias.tier"] === "full");
      return pts.length > 0 ? pts : undefined;
    }, 15_000);
    expect(steps.reduce((n, p) => n + (p.value ?? 0), 0)).toBe(1);
    // Each reviewer's process exports its own count on its own schedule: wait for both.
    const reviewers = await rx.waitFor((s) => {
      void s;
      const names = new Set(
        rx
          .metricPoints("trias.verdicts")
          .filter((p) => p.attributes["trias.verdict"] === "approve")
          .map((p) => p.attributes["trias.reviewer"]),
      );
      return names.size >= 2 ? names : undefined;
    }, 15_000);
    expect(reviewers).toEqual(new Set(["reviewer-1", "reviewer-2"]));
  });
});
