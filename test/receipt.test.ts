import { spawn } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { auditEvents, exportTrace, readRun, type StoredEvent } from "@trias/console";
import type { MessageOf } from "@trias/protocol";
import { computeReceipt } from "@trias/runstate";
import { REPO, startHarness, type Harness } from "./helpers/harness.js";

describe("receipts", () => {
  let h: Harness;
  let run: string;
  let events: StoredEvent[];
  let sealed: MessageOf<"run_closed">;

  beforeAll(async () => {
    h = await startHarness();
    run = (
      await h.client.submit({
        goal: "pay",
        program: "transfer",
        input: { from: "alice", to: "bob", amount: 3 },
        requestedBy: "test",
      })
    ).run;
    sealed = (await h.client.waitForClose([run], 20_000)).get(run)!;
    events = await readRun(h.bus, run);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("receipt - recomputed twice, and by a second process, it is byte-identical to the signed one", async () => {
    const covered = events
      .filter((e) => e.seq <= sealed.body.receipt.lastSeq)
      .map((e) => ({ seq: e.seq, subject: e.subject, frame: e.data }));
    const a = computeReceipt(covered, run);
    const b = computeReceipt(covered, run);
    expect(a).toEqual(b);
    expect(a.head).toBe(sealed.body.receipt.head);
    expect(a.events).toBe(sealed.body.receipt.events);

    const file = join(mkdtempSync(join(tmpdir(), "trias-receipt-")), `${run}.trace`);
    exportTrace(file, run, events);
    const child = spawn(
      process.execPath,
      [join(REPO, "agents", "console", "dist", "cli.js"), "audit", "--file", file, "--json"],
      { env: { ...process.env, TRIAS_KEY_DIR: h.keyDir } },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.once("exit", r));
    expect(code).toBe(0);
    const report = JSON.parse(out) as { ok: boolean; recomputedHead: string };
    expect(report.ok).toBe(true);
    expect(report.recomputedHead).toBe(sealed.body.receipt.head);
  });

  it("receipt - one changed byte in any stored event makes the audit fail and name that event", () => {
    expect(auditEvents(h.registry, run, events).ok).toBe(true);
    const covered = events.filter((e) => e.seq <= sealed.body.receipt.lastSeq);
    expect(covered.length).toBeGreaterThanOrEqual(10);
    for (const target of covered) {
      // Three positions per event: the frame header, the middle of the payload, the last byte.
      for (const at of [3, Math.floor(target.data.length / 2), target.data.length - 1]) {
        const data = Uint8Array.from(target.data);
        data[at] = (data[at] ?? 0) ^ 0x40;
        const tampered = events.map((e) => (e.seq === target.seq ? { ...e, data } : e));
        const report = auditEvents(h.registry, run, tampered);
        expect(report.ok, `byte ${at} of #${target.seq}`).toBe(false);
        expect(report.firstBad?.seq, `byte ${at} of #${target.seq}`).toBe(target.seq);
      }
    }
  });

  it("receipt - a removed, reordered or re-subjected event is named too", () => {
    const covered = events.filter((e) => e.seq <= sealed.body.receipt.lastSeq);
    const victim = covered[4]!;
    expect(
      auditEvents(
        h.registry,
        run,
        events.filter((e) => e.seq !== victim.seq),
      ).firstBad?.seq,
    ).toBe(covered[5]!.seq);
    const swapped = [...events];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    expect(auditEvents(h.registry, run, swapped).ok).toBe(false);
    const moved = events.map((e) =>
      e.seq === victim.seq ? { ...e, subject: e.subject.replace(run, "other-run") } : e,
    );
    expect(auditEvents(h.registry, run, moved).firstBad?.seq).toBe(victim.seq);
  });
});
