import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditEvents, readRun } from "@trias/console";
import type { MessageOf } from "@trias/protocol";
import { LocalNatsServer } from "@trias/bus";
import { waitFor } from "@trias/testing";
import { startHarness, type Harness } from "./helpers/harness.js";

// Crashes are real: the agent process SIGKILLs itself at the named point (TRIAS_FAULT), the
// test restarts it without the fault, and the run must still end with every effect applied
// exactly once and a trace that audits clean. The agents run with the shipped ack wait: the
// delivery the dead process held comes back to its successor within seconds.
describe("faults", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness({ env: { LOG_LEVEL: "warn" } });
  });
  afterAll(async () => {
    await h?.close();
  });

  async function crashAndRecover(agent: string, point: string, amount: number): Promise<void> {
    await h.stack.restart(agent, { TRIAS_FAULT: `${agent}:${point}` });
    await h.stack.waitReady();
    const before = (await h.ledger.read()).state.accounts;
    const crashed = h.stack.exited(agent);
    const { run } = await h.client.submit({
      goal: `crash ${agent} ${point}`,
      program: "transfer",
      input: { from: "treasury", to: "carol", amount },
      requestedBy: "test",
    });
    const code = await Promise.race([
      crashed,
      new Promise<"alive">((r) => setTimeout(() => r("alive"), 20_000)),
    ]);
    expect(code, `${agent} should have crashed at ${point}`).not.toBe("alive");
    await h.stack.restart(agent);
    await h.stack.waitReady();
    // Generous for a loaded machine (the restarted process boots in 1-7 s there), but it
    // fails when the delivery the dead process held sits out a 30 s ack wait.
    const closed = await h.client.waitForClose([run], 20_000);
    expect(closed.get(run)?.body.outcome, `${agent}:${point}`).toBe("completed");

    // Exactly once: the ledger moved by the amount once, and holds one effect per step attempt.
    const after = (await h.ledger.read()).state;
    expect(after.accounts["carol"]?.balance).toBe((before["carol"]?.balance ?? 0) + amount);
    expect(
      Object.keys(after.applied)
        .filter((k) => k.startsWith(`${run}:`))
        .sort(),
    ).toEqual([`${run}:1:0`]);
    const trace = await readRun(h.bus, run);
    const executed = (await h.trace(run))
      .map((o) => o.message)
      .filter((m): m is MessageOf<"step_executed"> => m.kind === "step_executed");
    expect(executed.map((e) => e.body.effectId)).toEqual([`${run}:0:0`, `${run}:1:0`]);
    // The trace audits clean: every signature, every chain link, no illegal transition.
    const report = auditEvents(h.registry, run, trace);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.violations).toEqual([]);
  }

  const cases: [string, string][] = [
    ["proposer", "after-task_submitted"],
    ["router", "before-step_proposed"],
    ["router", "after-step_proposed"],
    ["reviewer-1", "after-tier_assigned"],
    ["executor", "after-claim"],
    ["executor", "after-effect"],
    ["executor", "after-record"],
    ["verifier", "before-step_executed"],
    ["verifier", "after-step_executed"],
  ];
  it.each(cases)(
    "faults - %s killed at %s: the run completes, effects applied exactly once, the trace audits clean",
    async (agent, point) => {
      await crashAndRecover(agent, point, 7);
    },
  );

  it("faults - nats-server stopped and restarted mid-run: no accepted task is lost", async () => {
    const runs: string[] = [];
    for (let i = 0; i < 6; i++) {
      runs.push(
        (
          await h.client.submit({
            goal: "during restart",
            program: "transfer",
            input: { from: "treasury", to: "bob", amount: 1 },
            requestedBy: "test",
          })
        ).run,
      );
    }
    await h.stack.server?.restart();
    for (let i = 0; i < 3; i++) {
      runs.push(
        (
          await h.client.submit({
            goal: "after restart",
            program: "transfer",
            input: { from: "treasury", to: "bob", amount: 1 },
            requestedBy: "test",
          })
        ).run,
      );
    }
    // The console's own watch is gone with the restart; read the durable trace instead.
    const outcomes = await waitFor(
      "every run to close",
      async () => {
        const o = await Promise.all(
          runs.map(
            async (r) =>
              (await h.trace(r))
                .map((x) => x.message)
                .find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed")?.body.outcome,
          ),
        );
        return o.every((x) => x !== undefined) ? o : undefined;
      },
      60_000,
      250,
    );
    expect(outcomes).toEqual(runs.map(() => "completed"));
    for (const r of runs) expect(auditEvents(h.registry, r, await readRun(h.bus, r)).ok).toBe(true);
  });
});

// Transient is never final: a nats-server stopped while the agents handle messages and kept
// down past the client's request timeout makes every agent's calls fail with timeouts and
// lost connections. None of that is the messages' fault: nothing is refused, every step runs
// once, every run completes.
describe("faults - bus outage", () => {
  let h: Harness;
  let server: LocalNatsServer;
  beforeAll(async () => {
    h = await startHarness({
      env: { LOG_LEVEL: "warn" },
      natsFactory: async (users) => {
        server = await LocalNatsServer.start({ users });
        return { url: server.url, restart: () => server.restart(), stop: () => server.stop() };
      },
    });
  });
  afterAll(async () => {
    await h?.close();
  });

  it("faults - nats-server stopped mid-handling and down for 7 s: no message refused, every step once, every run completes", async () => {
    const before = (await h.ledger.read()).state.accounts["bob"]?.balance ?? 0;
    const runs: string[] = [];
    const submitting = (async () => {
      for (let i = 0; i < 12; i++) {
        const { run } = await h.client.submit({
          goal: `outage ${i}`,
          program: "transfer",
          input: { from: "treasury", to: "bob", amount: 1 },
          requestedBy: "test",
        });
        runs.push(run);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await waitFor("a few runs under way", () => (runs.length >= 4 ? true : undefined), 20_000);
    // Longer than the JetStream client's 5 s request timeout: handlers see timeouts. (pnpm
    // soak SIGKILLs the server; here it stops, so that its store is whatever it acknowledged.)
    await server.stopProcess();
    await new Promise((r) => setTimeout(r, 7_000));
    await server.restart();
    await submitting;
    const outcomes = await waitFor(
      "every run to close",
      async () => {
        const o = await Promise.all(
          runs.map(
            async (r) =>
              (await h.trace(r))
                .map((x) => x.message)
                .find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed")?.body.outcome,
          ),
        );
        return o.every((x) => x !== undefined) ? o : undefined;
      },
      90_000,
      500,
    );
    expect(outcomes).toEqual(runs.map(() => "completed"));
    for (const r of runs) expect(await h.rejections(r)).toEqual([]);
    // Every step ran exactly once: one ledger effect per step, and the money moved once per run.
    const after = (await h.ledger.read()).state;
    for (const r of runs) {
      expect(
        Object.keys(after.applied)
          .filter((k) => k.startsWith(`${r}:`))
          .sort(),
      ).toEqual([`${r}:1:0`]);
    }
    expect(after.accounts["bob"]?.balance).toBe(before + runs.length);
  });
});
