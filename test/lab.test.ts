import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ATTACKS, EXIT, FAILING_VERDICTS, type LabReport } from "@trias/console";
import { REPO } from "./helpers/harness.js";

const CLI = join(REPO, "agents", "console", "dist", "cli.js");

/** `trias lab` as a user runs it: its own embedded nats-server and agent processes. */
async function lab(args: string[]): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(process.execPath, [CLI, "lab", ...args], {
    env: { ...process.env, NATS_URL: "", TRIAS_KEY_DIR: "" },
  });
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, out, err };
}

/**
 * The hole current main still has, closed by a branch in flight: a tier downgrade signed by
 * the real router key (the executor refusing `tier_downgrade`). For it the test asserts that
 * the lab tells the truth either way (the verdict follows the effect, the exit code follows
 * the verdicts), so it stays green before and after that branch lands; every other attack
 * must be defended.
 */
const OPEN_ON_MAIN = new Set(["tier_downgrade"]);

/**
 * Each `trias lab` / `trias eval` call starts its own nats-server and seven agent processes;
 * on a loaded 2-core machine that alone can take tens of seconds.
 */
const SLOW_MS = 240_000;

describe("trias lab", () => {
  it(
    "lab - two seeded trials of every attack: each defended attack is judged defended, holes are reported, exit code follows",
    async () => {
      const r = await lab(["--trials", "2", "--seed", "11", "--json"]);
      expect(r.err).not.toMatch(/at .*\.js:\d+/);
      const report = JSON.parse(r.out) as LabReport;
      expect(report.rows).toHaveLength(ATTACKS.length * 2);
      for (const row of report.rows) {
        const what = `trial ${row.trial} ${row.attack}: ${row.verdict} (${row.observed})`;
        if (OPEN_ON_MAIN.has(row.attack)) {
          expect(["defended", "breached"], what).toContain(row.verdict);
          if (row.attack === "tier_downgrade")
            expect(row.verdict === "breached", what).toBe(/effect\(s\) applied/.test(row.observed));
        } else {
          expect(row.verdict, what).toBe("defended");
        }
      }
      // Refusals name the check that refused: the lab read them from the signed records.
      const observed = (name: string) =>
        report.rows.filter((x) => x.attack === name).map((x) => x.observed);
      expect(observed("forged_signature").join()).toMatch(/signature_invalid/);
      expect(observed("duplicate_reviewer").join()).toMatch(/duplicate_reviewer/);
      expect(observed("missing_reviewer").join()).toMatch(/quorum_not_met/);
      expect(observed("purged_run").join()).toMatch(/names it missing/);
      expect(observed("consumer_hijack").join()).toMatch(/refused both on executor-/);
      // Erasure during a run and after it: both runs closed, receipts verify, nothing in clear.
      for (const o of observed("gdpr_erase")) {
        expect(o).toMatch(/during: run closed \w+, key erased, audit OK, no clear datum/);
        expect(o).toMatch(/after: run closed completed, key erased, audit OK, no clear datum/);
      }

      const failing = report.rows.some((x) => FAILING_VERDICTS.includes(x.verdict));
      expect(report.ok).toBe(!failing);
      expect(r.code).toBe(failing ? 1 : 0);
      expect(report.exitCode).toBe(r.code);
    },
    SLOW_MS,
  );

  it(
    "lab - the same seed draws the same trial; an unknown attack is a usage error",
    async () => {
      const a = await lab(["--attack", "flood", "--seed", "5", "--json"]);
      const b = await lab(["--attack", "flood", "--seed", "5", "--json"]);
      const flood = (x: { out: string }) => (JSON.parse(x.out) as LabReport).rows[0]?.observed;
      expect(flood(a)).toMatch(/^\d+ junk frames refused/);
      expect(flood(a)).toBe(flood(b));
      expect(a.code).toBe(EXIT.ok);

      const bad = await lab(["--attack", "teleport"]);
      expect(bad.code).toBe(EXIT.usage);
      expect(bad.err).toMatch(/unknown attack\(s\): teleport; the lab knows .*tool_injection/);
    },
    SLOW_MS,
  );
});
