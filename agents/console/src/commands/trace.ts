import type { Command } from "commander";
import type { Bus } from "@trias/bus";
import { isTriasError, subjectFor, ValidationError } from "@trias/protocol";
import {
  auditAll,
  auditEvents,
  checkCheckpoint,
  checkpointOf,
  exportTrace,
  importTrace,
  readRun,
  replayLines,
  type StoredEvent,
} from "../audit.js";
import { loadRegistry } from "../connect.js";
import { traceTree } from "../trace.js";
import {
  CliError,
  EXIT,
  classify,
  existingFile,
  fullReadNote,
  notFound,
  out,
  requireRun,
  usage,
  withOperator,
} from "../cli-kit.js";

/** A run's events from the bus (NATS_URL) or from an exported file; "no such run" when empty. */
async function load(
  run: string | undefined,
  file: string | undefined,
  withErasures = false,
): Promise<{ run: string; events: StoredEvent[]; erased: Set<string> }> {
  if (file) {
    if (run) throw usage("give a run or --file, not both");
    // Away from the bus the erasure records are not at hand: sealed values show as personal
    // data, which without the key store is all they are.
    return { ...importTrace(file), erased: new Set() };
  }
  if (!run) throw usage("give a run id, or --file <trace> for an exported trace");
  return withOperator(async ({ bus }) => {
    const events = await readRun(bus, run, fullReadNote(run));
    requireRun(bus, run, events);
    // Only the causal tree shows sealed values: the other commands skip this read, which
    // spans every erasure record in the trace.
    return { run, events, erased: withErasures ? await erasedSubjects(bus) : new Set<string>() };
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

/**
 * With --json, a command that cannot finish still prints one JSON object (`ok: false`, the
 * exit code, the error's code and message) instead of a line on stderr.
 */
async function jsonOnError(json: boolean | undefined, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (e) {
    if (!json) throw e;
    const { exitCode, message } = classify(e);
    const code = isTriasError(e)
      ? e.code
      : e instanceof CliError
        ? exitCode === EXIT.notFound
          ? "not_found"
          : "usage"
        : "internal";
    // The message without classify's "code: " prefix: the code has its own field.
    const text = isTriasError(e) ? e.message : message;
    out(JSON.stringify({ ok: false, exitCode, error: { code, message: text } }));
    process.exitCode = exitCode;
  }
}

/** The run's events and checkpoint, from the bus or an exported file. */
async function loadAudited(
  r: string | undefined,
  file: string | undefined,
): Promise<{ run: string; events: StoredEvent[]; checkpoint: string | null }> {
  if (file) {
    if (r) throw new ValidationError("schema_invalid", "give a run or --file, not both");
    return importTrace(file);
  }
  const { run, events } = await load(r, undefined);
  const checkpoint = await withOperator(({ bus }) => checkpointOf(bus, run));
  return { run, events, checkpoint };
}

export function registerTrace(program: Command): void {
  program
    .command("audit")
    .description(
      "check every signature, the receipt chain and the whole trace (docs/receipts.md); names the first bad event",
    )
    .argument("[run]", "run id (read from the trace stream at NATS_URL)")
    .option("--file <trace>", "an exported trace (trias export) instead of the bus", existingFile)
    .option("--all", "every run and the chain of receipt checkpoints; names a purged run")
    .option("--json", "the report as JSON (also when the audit cannot run)")
    .addHelpText(
      "after",
      "\nExit codes: 0 ok (warnings allowed), 1 audit failed, 2 usage (a missing --file too), 3 no\nsuch run, 4 environment missing, 5 unreadable input (not msgpack, truncated, not an export).",
    )
    .action(async (r: string | undefined, o: { file?: string; json?: boolean; all?: boolean }) =>
      jsonOnError(o.json, async () => {
        if (o.all) {
          if (r || o.file) throw usage("audit --all takes no run and no --file");
          const registry = loadRegistry();
          const all = await withOperator(({ bus }) => auditAll(bus, registry));
          process.exitCode = all.ok ? EXIT.ok : EXIT.failed;
          if (o.json) {
            out(JSON.stringify({ ...all, exitCode: process.exitCode }));
            return;
          }
          for (const x of all.runs)
            out(
              `${x.ok ? "ok    " : "FAILED"} ${x.run}${x.anchored === null ? "  (not anchored)" : `  checkpoint ${x.anchored}`}${x.firstProblem ? `: ${x.firstProblem}` : ""}`,
            );
          for (const w of all.warnings) out(`  warning: ${w}`);
          for (const p of all.problems) out(`  ${p}`);
          out(
            `audit --all: ${all.ok ? "OK" : "FAILED"}, ${all.runs.length} runs, ${all.checkpoints} checkpoints${all.head ? `, chain head ${all.head.n}:${all.head.anchor}` : ""}`,
          );
          return;
        }
        const { run, events, checkpoint } = await loadAudited(r, o.file);
        const registry = loadRegistry();
        const report = auditEvents(registry, run, events);
        if (checkpoint !== null) {
          const wrong = checkCheckpoint(registry, checkpoint, report);
          if (wrong) {
            report.problems.push(wrong);
            report.ok = false;
          }
        } else if (report.claimed) report.warnings.push("no checkpoint anchors this run's receipt");
        process.exitCode = report.ok ? EXIT.ok : EXIT.failed;
        if (o.json) {
          out(JSON.stringify({ ...report, exitCode: process.exitCode }));
          return;
        }
        out(
          `${run}: ${report.events} events, ${report.verified} signatures verified, ${report.refused.length} refused on arrival, outcome ${report.outcome ?? "open"}`,
        );
        out(`receipt head ${report.claimed?.head ?? "none"} (recomputed ${report.recomputedHead})`);
        for (const v of report.violations)
          out(`  illegal transition recorded at #${v.seq}: ${v.reason}`);
        for (const a of report.after)
          out(`  after the receipt #${a.seq} ${a.kind}: ${a.verdict}: ${a.reason}`);
        // Late verdicts and records after the receipt are listed just above.
        for (const w of report.warnings)
          if (!/^seq \d+: after the receipt/.test(w)) out(`  warning: ${w}`);
        if (report.ok) {
          out("audit: OK, every signature, every chain link and the whole trace verify");
          return;
        }
        out(
          `audit: FAILED${report.firstBad ? ` at event #${report.firstBad.seq}: ${report.firstBad.reason}` : ""}`,
        );
        for (const p of report.problems) out(`  ${p}`);
      }),
    );

  program
    .command("receipt")
    .description(
      "the run's signed receipt checkpoint: a compact JWS (EdDSA) any JOSE library checks",
    )
    .argument("[run]", "run id (read from the receipts bucket at NATS_URL)")
    .option("--file <trace>", "an exported trace (trias export) instead of the bus", existingFile)
    .action(async (r: string | undefined, o: { file?: string }) => {
      const { run, checkpoint } = await loadAudited(r, o.file);
      if (checkpoint === null)
        throw notFound(`run ${run} has no checkpoint (still open, or no receipts bucket)`);
      out(checkpoint);
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
    const { run, events, erased } = await load(r, o.file, true);
    for (const l of traceTree(loadRegistry(), run, events, erased)) out(l);
  });

  program
    .command("export")
    .description("save a run's trace to a file, for audits away from the bus")
    .argument("<run>", "run id")
    .argument("<file>", "where to write the trace")
    .action(async (run: string, file: string) =>
      withOperator(async ({ bus }) => {
        const events = await readRun(bus, run, fullReadNote(run));
        requireRun(bus, run, events);
        exportTrace(file, run, events, await checkpointOf(bus, run));
        out(`wrote ${events.length} events of ${run} to ${file}`);
      }),
    );
}
