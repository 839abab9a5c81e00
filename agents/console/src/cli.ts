#!/usr/bin/env node
import { parseArgs } from "node:util";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { isTriasError } from "@trias/protocol";
import { initKeyDir, revokeKey, DEFAULT_IDENTITIES } from "@trias/signing";
import { initTelemetry } from "@trias/telemetry";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import {
  auditEvents,
  exportTrace,
  importTrace,
  readRun,
  replayLines,
  type StoredEvent,
} from "./audit.js";
import { ConsoleClient } from "./client.js";
import { connectOperator, loadRegistry, loadSigner } from "./connect.js";
import { decideAsHuman, pendingHuman } from "./human.js";
import { deployNatsConfig, setupTrace } from "./setup.js";
import { Signer } from "@trias/signing";
import {
  diffPolicies,
  explainStep,
  loadPolicy,
  PolicyError,
  renderPolicyDiff,
  summarizePolicy,
} from "@trias/policy";
import { describe } from "./format.js";
import { traceTree } from "./trace.js";
import { runDemo, DEFAULT_KEY_DIR, DEFAULT_LOG_ROOT } from "./demo.js";
import { mcpCommand } from "./mcp-command.js";
import { scaffoldCommand } from "./policy-scaffold.js";

const USAGE = `trias: a governed execution runtime for AI agents

usage:
  trias demo [--env dev|staging|prod] [--timeout-ms N]   the main job: governed runs on an embedded nats-server
  trias keys init <dir>                                  one Ed25519 key per agent identity + the registry (JWKS)
  trias keys revoke <dir> <name|kid>                     mark a key revoked in the registry
  trias submit <program> <input-json> [--wait]           submit a task as the console
  trias watch [run]                                      follow the trace as it is written
  trias audit <run> | --file <trace>                     check every signature and the receipt chain; names the first bad event
  trias replay <run> | --file <trace>                    re-run the state machine over the trace and print each transition
  trias export <run> <file>                              save a run's trace for offline audit
  trias trace <run> | --file <trace>                     the run's causal tree (who emitted what, in answer to what)
  trias pending [run]                                    steps waiting for a human decision
  trias approve <run> <step> [--as <human>]              approve a waiting step, signed with the human's own key
  trias reject <run> <step> --reason <text> [--as <human>]
  trias policy check <file>                              validate a policy: digest and summary, or every error with its line
  trias policy explain <file> --step <json>              score terms, matched rules, tier and why, for one step
  trias policy diff <a> <b>                              which tools change tier between two environments
  trias policy scaffold [--policy <file>] [--full]       policy entries for loaded tools the policy does not rate yet
  trias mcp [--http [--port N]] [--upstream <server>]    Trias as an MCP server: control tools, and a governing proxy for <server>
  trias ledger                                           the demo ledger's balances
  trias setup [--max-age-days N] [--replicas N] [--seed-ledger]   create the trace stream and buckets (admin)
  trias nats-config                                      print the per-role NATS server configuration for deploy/

environment: NATS_URL (NATS_USER, NATS_PASSWORD), TRIAS_KEY_DIR, TRIAS_ENV, TRIAS_CONFIG, LOG_LEVEL, OTEL_*`;

function policyCommand(rest: string[]): number {
  const [sub, ...args] = rest;
  const { values, positionals } = parseArgs({
    args,
    options: { step: { type: "string" } },
    allowPositionals: true,
  });
  try {
    switch (sub) {
      case "check": {
        const [file] = positionals;
        if (!file) break;
        out(summarizePolicy(loadPolicy(file)));
        return 0;
      }
      case "explain": {
        const [file] = positionals;
        if (!file || !values.step) break;
        let step: unknown;
        try {
          step = JSON.parse(values.step);
        } catch (e) {
          out(
            `--step is not JSON: ${(e as Error).message}; example: --step '{"tool":"ledger.transfer","args":{"from":"a","to":"b","amount":5}}'`,
          );
          return 2;
        }
        out(explainStep(loadPolicy(file), step as Parameters<typeof explainStep>[1]));
        return 0;
      }
      case "diff": {
        const [a, b] = positionals;
        if (!a || !b) break;
        const pa = loadPolicy(a);
        const pb = loadPolicy(b);
        out(renderPolicyDiff(pa, pb, diffPolicies(pa, pb)));
        return 0;
      }
      default:
        break;
    }
  } catch (e) {
    if (e instanceof PolicyError) {
      out(`policy refused:\n${e.message}`);
      return 1;
    }
    throw e;
  }
  out("usage: trias policy check <file> | explain <file> --step <json> | diff <a> <b>");
  return 2;
}

const PROGRAM_HINT = "balance-check, transfer, refund, payout, close-account, noop, steps";

async function traceCommand(
  cmd: "audit" | "replay" | "export" | "trace",
  positionals: string[],
  file: string | undefined,
  json: boolean,
): Promise<number> {
  let run: string;
  let events: StoredEvent[];
  if (cmd === "export") {
    const [r, target] = positionals;
    if (!r || !target) {
      out("usage: trias export <run> <file>");
      return 2;
    }
    const { bus } = await connectOperator();
    try {
      const evs = await readRun(bus, r);
      if (evs.length === 0) {
        out(`no messages for run ${r} in the trace`);
        return 1;
      }
      exportTrace(target, r, evs);
      out(`wrote ${evs.length} events of ${r} to ${target}`);
      return 0;
    } finally {
      await bus.drain();
    }
  }
  if (file) {
    ({ run, events } = importTrace(file));
  } else {
    const [r] = positionals;
    if (!r) {
      out(`usage: trias ${cmd} <run> | --file <trace>`);
      return 2;
    }
    run = r;
    const { bus } = await connectOperator();
    try {
      events = await readRun(bus, r);
    } finally {
      await bus.drain();
    }
  }
  const registry = loadRegistry();
  if (cmd === "trace") {
    for (const l of traceTree(registry, run, events)) out(l);
    return 0;
  }
  if (cmd === "replay") {
    const { lines, state } = replayLines(registry, run, events);
    for (const l of lines) out(l);
    out(
      `${run}: ${state.status}${state.outcome ? ` (${state.outcome})` : ""}, ${state.transitions.length} transitions, ${state.violations.length} illegal`,
    );
    return 0;
  }
  const report = auditEvents(registry, run, events);
  if (json) {
    out(JSON.stringify(report));
    return report.ok ? 0 : 1;
  }
  out(
    `${run}: ${report.events} events, ${report.verified} signatures verified, ${report.refused.length} refused on arrival, outcome ${report.outcome ?? "open"}`,
  );
  out(`receipt head ${report.claimed?.head ?? "none"} (recomputed ${report.recomputedHead})`);
  for (const v of report.violations) out(`  illegal transition recorded at #${v.seq}: ${v.reason}`);
  if (report.ok) {
    out("audit: OK, every signature and every chain link verifies");
    return 0;
  }
  out(
    `audit: FAILED${report.firstBad ? ` at event #${report.firstBad.seq}: ${report.firstBad.reason}` : ""}`,
  );
  for (const p of report.problems) out(`  ${p}`);
  return 1;
}

function out(line: string): void {
  process.stdout.write(line + "\n");
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "demo": {
      const { values } = parseArgs({
        args: rest,
        options: { env: { type: "string" }, "timeout-ms": { type: "string" } },
      });
      const natsUrl = process.env["NATS_URL"];
      if (!natsUrl && !findNatsServer()) {
        out(NATS_INSTALL_HINT);
        return 1;
      }
      return runDemo({
        environment: values.env ?? process.env["TRIAS_ENV"] ?? "dev",
        keyDir: process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR,
        logRoot: DEFAULT_LOG_ROOT,
        ...(natsUrl ? { natsUrl } : {}),
        timeoutMs: Number(values["timeout-ms"] ?? 60_000),
        out,
      });
    }
    case "keys": {
      const [sub, dir, target] = rest;
      if (sub === "init" && dir) {
        const r = await initKeyDir(dir, DEFAULT_IDENTITIES);
        out(
          `keys in ${r.dir}: created ${r.created.join(", ") || "none"}${r.kept.length ? `; kept existing ${r.kept.join(", ")}` : ""}`,
        );
        return 0;
      }
      if (sub === "revoke" && dir && target) {
        const k = revokeKey(dir, target);
        out(
          `revoked ${k.name} (${k.kid}); agents refuse its messages once they reload the registry`,
        );
        return 0;
      }
      out(USAGE);
      return 2;
    }
    case "audit":
    case "replay":
    case "trace":
    case "export": {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { file: { type: "string" }, json: { type: "boolean" } },
        allowPositionals: true,
      });
      return traceCommand(cmd, positionals, values.file, values.json ?? false);
    }
    case "submit": {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { wait: { type: "boolean" }, goal: { type: "string" } },
        allowPositionals: true,
      });
      const [program, input] = positionals;
      if (!program) {
        out(`usage: trias submit <program> <input-json> [--wait]; programs: ${PROGRAM_HINT}`);
        return 2;
      }
      let parsed: unknown;
      try {
        parsed = JSON.parse(input ?? "{}");
      } catch (e) {
        out(
          `input is not JSON: ${(e as Error).message}; example: trias submit transfer '{"from":"alice","to":"bob","amount":5}'`,
        );
        return 2;
      }
      const { bus, registry, keyDir } = await connectOperator();
      try {
        const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
        const { run, seq } = await client.submit({
          goal: values.goal ?? `${program} from the CLI`,
          program,
          input: parsed as Record<string, never>,
          requestedBy: process.env["USER"] ?? "cli",
        });
        out(`submitted ${run}`);
        if (!values.wait) return 0;
        const closed = await client.waitForClose(
          [run],
          10 * 60_000,
          (o) => {
            const line = o && describe(o.message, o.key);
            if (line) out(line);
          },
          seq,
        );
        return closed.get(run)?.body.outcome === "completed" ? 0 : 1;
      } finally {
        await bus.drain();
      }
    }
    case "watch": {
      const [run] = rest;
      const { bus, registry } = await connectOperator();
      const client = new ConsoleClient(
        bus,
        loadSigner(process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR, "console"),
        registry,
      );
      await client.follow((o, raw, err) => {
        if (run && !raw.subject.endsWith(`.${run}`)) return;
        const line = o
          ? describe(o.message, o.key)
          : `unverifiable message on ${raw.subject}: ${String((err as Error)?.message ?? err)}`;
        if (line) out(line);
      }, 1);
      await new Promise<void>((resolve) => process.once("SIGINT", resolve));
      await bus.drain();
      return 0;
    }
    case "pending": {
      const { bus, registry } = await connectOperator();
      try {
        const steps = await pendingHuman(bus, registry, rest[0]);
        for (const w of steps)
          out(
            `${w.run} step ${w.step} (attempt ${w.attempt}): ${w.tool} ${JSON.stringify(w.args)} — tier ${w.tier}, waiting for a human`,
          );
        out(
          `${steps.length} step(s) waiting; decide with: trias approve <run> <step>  |  trias reject <run> <step> --reason <text>`,
        );
        return 0;
      } finally {
        await bus.drain();
      }
    }
    case "approve":
    case "reject": {
      const { values, positionals } = parseArgs({
        args: rest,
        options: { reason: { type: "string" }, as: { type: "string" } },
        allowPositionals: true,
      });
      const [run, stepText] = positionals;
      const step = Number(stepText);
      if (!run || !Number.isInteger(step) || step < 0 || (cmd === "reject" && !values.reason)) {
        out(
          `usage: trias ${cmd} <run> <step>${cmd === "reject" ? " --reason <text>" : ""} [--as <human identity>]`,
        );
        return 2;
      }
      const { bus, registry, keyDir } = await connectOperator();
      try {
        const human = process.env["TRIAS_HUMAN_KEY"]
          ? Signer.load(process.env["TRIAS_HUMAN_KEY"])
          : loadSigner(keyDir, values.as ?? "human-operator");
        const w = await decideAsHuman(
          bus,
          registry,
          human,
          run,
          step,
          cmd,
          values.reason ?? `approved by ${human.name}`,
        );
        out(
          `${cmd === "approve" ? "approved" : "rejected"} ${run} step ${w.step}: ${w.tool} ${JSON.stringify(w.args)}, signed by ${human.name}`,
        );
        return 0;
      } finally {
        await bus.drain();
      }
    }
    case "policy":
      if (rest[0] === "scaffold") return scaffoldCommand(rest.slice(1), out);
      return policyCommand(rest);
    case "mcp":
      return mcpCommand(rest);
    case "setup": {
      const { values } = parseArgs({
        args: rest,
        options: {
          "max-age-days": { type: "string" },
          replicas: { type: "string" },
          "seed-ledger": { type: "boolean" },
        },
      });
      const { bus } = await connectOperator();
      try {
        const days =
          values["max-age-days"] === undefined ? undefined : Number(values["max-age-days"]);
        if (days !== undefined && !(days >= 0)) {
          out("--max-age-days must be a number of days >= 0 (0 keeps the trace forever)");
          return 2;
        }
        const r = await setupTrace(bus, {
          ...(days !== undefined ? { maxAgeMs: days * 86_400_000 } : {}),
          ...(values.replicas ? { replicas: Number(values.replicas) } : {}),
          seedLedger: values["seed-ledger"] ?? false,
        });
        out(
          `trace stream ${bus.stream} and buckets ready${r.seeded ? "; demo ledger seeded" : ""}`,
        );
        return 0;
      } finally {
        await bus.drain();
      }
    }
    case "nats-config":
      out(deployNatsConfig());
      return 0;
    case "ledger": {
      const { bus } = await connectOperator();
      try {
        const { state } = await new Ledger(await bus.kv(LEDGER_BUCKET)).read();
        for (const [name, a] of Object.entries(state.accounts))
          out(`${name.padEnd(12)} ${String(a.balance).padStart(10)}${a.open ? "" : "  (closed)"}`);
        out(`${Object.keys(state.applied).length} effects applied`);
        return 0;
      } finally {
        await bus.drain();
      }
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      out(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      out(`unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

const telemetry = await initTelemetry({
  serviceName: "trias-console",
  agentName: "console",
  role: "console",
});
try {
  process.exitCode = await main(process.argv.slice(2));
  await telemetry.shutdown();
} catch (e) {
  process.stderr.write(
    `trias: ${isTriasError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)}\n`,
  );
  process.exitCode = 1;
}
