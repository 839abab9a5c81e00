import type { Command } from "commander";
import type { Bus } from "@trias/bus";
import { subjectFor, ValidationError } from "@trias/protocol";
import {
  auditEvents,
  exportTrace,
  importTrace,
  readRun,
  replayLines,
  type StoredEvent,
} from "../audit.js";
import { loadRegistry } from "../connect.js";
import { traceTree } from "../trace.js";
import { EXIT, existingFile, out, requireRun, withOperator } from "../cli-kit.js";

/** A run's events from the bus (NATS_URL) or from an exported file; "no such run" when empty. */
async function load(
  run: string | undefined,
  file: string | undefined,
): Promise<{ run: string; events: StoredEvent[]; erased: Set<string> }> {
  if (file) {
    if (run) throw new ValidationError("schema_invalid", "give a run or --file, not both");
    // Away from the bus the erasure records are not at hand: sealed values show as personal
    // data, which without the key store is all they are.
    return { ...importTrace(file), erased: new Set() };
  }
  if (!run)
    throw new ValidationError(
      "schema_invalid",
      "give a run id, or --file <trace> for an exported trace",
    );
  return withOperator(async ({ bus }) => {
    const events = await readRun(bus, run);
    requireRun(bus, run, events);
    return { run, events, erased: await erasedSubjects(bus) };
  });
}

/** Subjects whose erasure is recorded (signed by the console) in the trace. */
async function erasedSubjects(bus: Bus): Promise<Set<string>> {
  const registry = loadRegistry();
  const out = new Set<string>();
  for (const raw of await bus.readAll(subjectFor("console", "subject_erased", "*"))) {
    try {
      const m = registry.open(raw.data).message;
      if (m.kind === "subject_erased") out.add(m.body.subject);
    } catch {
      // an unverifiable record erases nothing
    }
  }
  return out;
}

function traceCommand(program: Command, name: string, description: string) {
  return program
    .command(name)
    .description(description)
    .argument("[run]", "run id (read from the trace stream at NATS_URL)")
    .option("--file <trace>", "an exported trace (trias export) instead of the bus", existingFile);
}

export function registerTrace(program: Command): void {
  traceCommand(
    program,
    "audit",
    "check every signature and the receipt chain; names the first bad event",
  )
    .option("--json", "the report as JSON")
    .action(async (r: string | undefined, o: { file?: string; json?: boolean }) => {
      const { run, events } = await load(r, o.file);
      const report = auditEvents(loadRegistry(), run, events);
      process.exitCode = report.ok ? EXIT.ok : EXIT.failed;
      if (o.json) {
        out(JSON.stringify(report));
        return;
      }
      out(
        `${run}: ${report.events} events, ${report.verified} signatures verified, ${report.refused.length} refused on arrival, outcome ${report.outcome ?? "open"}`,
      );
      out(`receipt head ${report.claimed?.head ?? "none"} (recomputed ${report.recomputedHead})`);
      for (const v of report.violations)
        out(`  illegal transition recorded at #${v.seq}: ${v.reason}`);
      if (report.ok) {
        out("audit: OK, every signature and every chain link verifies");
        return;
      }
      out(
        `audit: FAILED${report.firstBad ? ` at event #${report.firstBad.seq}: ${report.firstBad.reason}` : ""}`,
      );
      for (const p of report.problems) out(`  ${p}`);
    });

  traceCommand(
    program,
    "replay",
    "re-run the state machine over the trace and print each transition",
  ).action(async (r: string | undefined, o: { file?: string }) => {
    const { run, events } = await load(r, o.file);
    const { lines, state } = replayLines(loadRegistry(), run, events);
    for (const l of lines) out(l);
    out(
      `${run}: ${state.status}${state.outcome ? ` (${state.outcome})` : ""}, ${state.transitions.length} transitions, ${state.violations.length} illegal`,
    );
  });

  traceCommand(
    program,
    "trace",
    "the run's causal tree (who emitted what, in answer to what)",
  ).action(async (r: string | undefined, o: { file?: string }) => {
    const { run, events, erased } = await load(r, o.file);
    for (const l of traceTree(loadRegistry(), run, events, erased)) out(l);
  });

  program
    .command("export")
    .description("save a run's trace to a file, for audits away from the bus")
    .argument("<run>", "run id")
    .argument("<file>", "where to write the trace")
    .action(async (run: string, file: string) =>
      withOperator(async ({ bus }) => {
        const events = await readRun(bus, run);
        requireRun(bus, run, events);
        exportTrace(file, run, events);
        out(`wrote ${events.length} events of ${run} to ${file}`);
      }),
    );
}
