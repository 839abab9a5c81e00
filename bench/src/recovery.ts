import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { ConsoleClient, Stack } from "@trias/console";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { dist, type Dist } from "./stats.js";

export interface RecoveryResult {
  name: string;
  runs: number;
  compensations: number;
  /** From the failed verification to the closing of the rolled-back run (stream timestamps). */
  totalMs: Dist;
  /** From one compensation order to its verification. */
  perCompensationMs: Dist;
}

/**
 * Recovery cost: five light steps with effects (refunds), then a transfer the ledger refuses;
 * the verifier rolls back all five in reverse order, each compensation a signed order that
 * the executor runs and the verifier checks. Measured on the trace's own timestamps.
 */
export async function benchRecovery(runs = 12): Promise<RecoveryResult> {
  const dir = mkdtempSync(join(tmpdir(), "trias-bench-recovery-"));
  const stack = await Stack.start({
    keyDir: join(dir, "keys"),
    logDir: join(dir, "logs"),
    env: { LOG_LEVEL: "warn" },
  });
  try {
    const registry = KeyRegistry.load(stack.registryFile);
    const client = new ConsoleClient(
      stack.admin,
      Signer.load(join(dir, "keys", keyFileName("console"))),
      registry,
    );
    const steps = [
      ...Array.from({ length: 5 }, (_, i) => ({
        tool: "ledger.refund",
        args: { account: "carol", amount: 1, reference: `r-${i}` },
      })),
      { tool: "ledger.transfer", args: { from: "dave", to: "bob", amount: 5_000 } },
    ];
    const totals: number[] = [];
    const perComp: number[] = [];
    let compensations = 0;
    for (let i = 0; i < runs + 2; i++) {
      const { run } = await client.submit({
        goal: "five effects, then a refusal",
        program: "steps",
        input: { steps },
        requestedBy: "bench",
      });
      const closed = await client.waitForClose([run], 60_000);
      if (closed.get(run)?.body.outcome !== "rolled_back")
        throw new Error(
          `recovery bench run ${run} ended ${closed.get(run)?.body.outcome ?? "open"}`,
        );
      if (i < 2) continue; // warm-up
      const trace = (await stack.admin.readAll(`trias.*.*.${run}`)).map((s) => ({
        at: s.timestampMs,
        m: registry.open(s.data).message,
      }));
      const failed = trace.find(
        (e) =>
          e.m.kind === "step_verified" &&
          e.m.body.verdict !== "passed" &&
          e.m.body.compensationOf === null,
      );
      const end = trace.find((e) => e.m.kind === "run_closed");
      if (!failed || !end) throw new Error(`recovery bench run ${run} has no failure or close`);
      totals.push(end.at - failed.at);
      for (const order of trace.filter(
        (e) => e.m.kind === "recovery_decided" && e.m.body.action === "compensate",
      )) {
        const c = order.m.kind === "recovery_decided" ? order.m.body.compensation : null;
        const verified = trace.find(
          (e) =>
            e.at >= order.at && e.m.kind === "step_verified" && e.m.body.compensationOf === c?.of,
        );
        if (verified) perComp.push(verified.at - order.at);
        compensations++;
      }
    }
    return {
      name: "rollback of 5 steps",
      runs,
      compensations,
      totalMs: dist(totals),
      perCompensationMs: dist(perComp),
    };
  } finally {
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
