import { Option, type Command } from "commander";
import { RunOutcome } from "@trias/protocol";
import { Signer } from "@trias/signing";
import { loadSigner, operatorKeyDir } from "../connect.js";
import { HUMAN_ACTIONS, type HumanAction } from "../resolve.js";
import { prepareHumanOrder, publishHumanOrder } from "../human.js";
import { RunIndex } from "../runs.js";
import { CliError, EXIT, out, withOperator } from "../cli-kit.js";

/** Sign a person's order about a run (cancel, resolve) with their own key and publish it. */
async function order(
  run: string,
  action: HumanAction,
  o: { as: string; key?: string; reason: string },
): Promise<void> {
  const keyFile = o.key ?? process.env["TRIAS_HUMAN_KEY"];
  const human = keyFile ? Signer.load(keyFile) : loadSigner(operatorKeyDir(), o.as);
  if (human.role !== "human")
    throw new CliError(
      EXIT.failed,
      `key ${human.name} is a ${human.role} key; this needs a person's key`,
    );
  // The person's own NATS user: it may publish human messages, nothing else.
  await withOperator(async ({ bus, registry }) => {
    const message = await prepareHumanOrder(bus, registry, human, run, action, o.reason);
    await publishHumanOrder(bus, message, human.seal(message));
    out(`${run}: ${message.body.action} ordered, signed by ${human.name}: ${message.body.reason}`);
  }, human.name);
}

function personOptions(c: Command): Command {
  return c
    .requiredOption("--reason <text>", "why, recorded in the trace")
    .option("--as <human>", "the person whose key signs", "human-operator")
    .option("--key <file>", "the person's private key file (default: TRIAS_HUMAN_KEY, else --as)");
}

export function registerRuns(program: Command): void {
  program
    .command("runs")
    .description("every run with its status and, for an open run, what it waits for")
    .addOption(
      new Option("--status <status>", "only runs with this status").choices([
        "open",
        ...RunOutcome.options,
      ]),
    )
    .option("--env <environment>", "only runs routed under this policy environment")
    .option("--json", "as JSON lines")
    .action(async (o: { status?: string; env?: string; json?: boolean }) =>
      withOperator(async ({ bus, registry }) => {
        const index = new RunIndex(registry);
        for (const m of await bus.readAll("trias.>")) index.add(m);
        const pending = index.pending();
        const rows = index
          .rows()
          .filter((r) => r.goal !== "")
          .filter((r) => !o.status || (r.outcome ?? "open") === o.status)
          .filter((r) => !o.env || r.environment === o.env)
          .sort((a, b) => a.startedAt - b.startedAt);
        for (const r of rows) {
          const status = r.outcome ?? "open";
          const why = index.why(r, pending);
          if (o.json)
            out(
              JSON.stringify({
                run: r.run,
                status,
                environment: r.environment,
                tools: r.tools,
                requestedBy: r.requestedBy,
                startedAt: r.startedAt,
                why,
              }),
            );
          else
            out(
              `${r.run}  ${status.padEnd(11)} ${(r.environment || "-").padEnd(8)} ${new Date(r.startedAt).toISOString().slice(0, 19)}  ${r.tools.join(",") || "-"}  ${why}`,
            );
        }
        if (!o.json) out(`${rows.length} run(s)`);
      }),
    );

  personOptions(
    program
      .command("cancel")
      .description(
        "stop a run: no further step; what ran is compensated where the run's state allows a rollback (signed by a person, in the trace)",
      )
      .argument("<run>", "run id"),
  ).action((run: string, o: { as: string; key?: string; reason: string }) =>
    order(run, "cancel", o),
  );

  personOptions(
    program
      .command("resolve")
      .description(
        "decide an escalated run: retry its step, roll back, abandon it, or mark it resolved by hand",
      )
      .argument("<run>", "run id")
      .addOption(
        new Option("--action <action>", "what to do")
          .choices(HUMAN_ACTIONS.filter((a) => a !== "cancel"))
          .makeOptionMandatory(),
      ),
  ).action((run: string, o: { as: string; key?: string; reason: string; action: HumanAction }) =>
    order(run, o.action, o),
  );
}
