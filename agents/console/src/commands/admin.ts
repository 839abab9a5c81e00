import { Option, type Command } from "commander";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { ADMIN_NATS_USER, type Identity } from "@trias/signing";
import { loadRegistry } from "../connect.js";
import { deployNatsConfig, setupTrace } from "../setup.js";
import { nonNegativeInt, out, withOperator } from "../cli-kit.js";
import { ConsoleClient } from "../client.js";
import { loadSigner } from "../connect.js";
import { eraseSubject } from "../privacy.js";
import { readReplicas, replicaLine } from "../replicas.js";
import { LEASES_BUCKET } from "@trias/bus";

export function registerAdmin(program: Command): void {
  program
    .command("setup")
    .description("create the trace stream and buckets (admin credentials)")
    .option(
      "--max-age-days <n>",
      "keep the trace this many days (0: forever)",
      nonNegativeInt("--max-age-days"),
    )
    .option(
      "--replicas <n>",
      "replicas of the trace stream and every bucket (3 on a 3-node NATS cluster)",
      nonNegativeInt("--replicas"),
    )
    .option("--seed-ledger", "seed the demo ledger's accounts")
    .action(async (o: { maxAgeDays?: number; replicas?: number; seedLedger?: boolean }) =>
      withOperator(async ({ bus }) => {
        const r = await setupTrace(bus, {
          ...(o.maxAgeDays !== undefined ? { maxAgeMs: o.maxAgeDays * 86_400_000 } : {}),
          ...(o.replicas ? { replicas: o.replicas } : {}),
          seedLedger: o.seedLedger ?? false,
        });
        out(
          `trace stream ${bus.stream} and buckets ready${r.seeded ? "; demo ledger seeded" : ""}`,
        );
      }, ADMIN_NATS_USER),
    );
  program
    .command("erase")
    .description(
      "erase a data subject's personal data by destroying its key (crypto-shredding, docs/privacy.md); signed into the trace",
    )
    .argument("<subject>", "the subject id personal data was sealed under (e.g. c-1042)")
    .requiredOption(
      "--reason <text>",
      "why, as recorded in the trace (e.g. a GDPR art. 17 request id)",
    )
    .action(async (subject: string, o: { reason: string }) =>
      withOperator(async ({ bus, registry, keyDir }) => {
        const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
        const r = await eraseSubject(client, subject, o.reason, process.env["USER"] ?? "cli");
        out(
          `${r.run}: ${subject} erased${r.keyDestroyed ? " (key destroyed)" : " (no key was held: nothing was sealed for it, or it was erased before)"}`,
        );
      }),
    );
  program
    .command("nats-config")
    .description(
      "print the NATS server configuration: one user per identity (the default identities, or the registry's with --key-dir)",
    )
    .option("--key-dir <dir>", "generate for the identities in this key dir's registry")
    .action((o: { keyDir?: string }) => {
      if (o.keyDir === undefined) {
        out(deployNatsConfig());
        return;
      }
      // A deployment with more humans or reviewers than the defaults.
      const seen = new Map<string, Identity>();
      for (const k of loadRegistry(o.keyDir).all())
        seen.set(k.name, { name: k.name, role: k.role });
      out(deployNatsConfig([...seen.values()]));
    });
  program
    .command("replicas")
    .description(
      "each agent identity's live replicas and the run partitions each holds (docs/scaling.md)",
    )
    .addOption(new Option("--json", "as JSON"))
    .action(async (o: { json?: boolean }) =>
      withOperator(async ({ bus }) => {
        const rows = await readReplicas(await bus.kv(LEASES_BUCKET));
        if (o.json) {
          out(JSON.stringify(rows));
          return;
        }
        if (rows.length === 0) out("no agent holds partitions yet (no agent started since setup)");
        for (const r of rows) out(replicaLine(r));
      }),
    );
  program
    .command("ledger")
    .description("the demo ledger's balances")
    .addOption(new Option("--json", "balances as JSON"))
    .action(async (o: { json?: boolean }) =>
      withOperator(async ({ bus }) => {
        const { state } = await new Ledger(await bus.kv(LEDGER_BUCKET)).read();
        if (o.json) {
          out(JSON.stringify(state.accounts));
          return;
        }
        for (const [name, a] of Object.entries(state.accounts))
          out(`${name.padEnd(12)} ${String(a.balance).padStart(10)}${a.open ? "" : "  (closed)"}`);
        out(`${Object.keys(state.applied).length} effects applied`);
      }),
    );
}
