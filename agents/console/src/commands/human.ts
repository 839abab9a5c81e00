import type { Command } from "commander";
import { Signer } from "@trias/signing";
import { decideAsHuman, pendingHuman, stepArguments } from "../human.js";
import { loadSigner, operatorKeyDir } from "../connect.js";
import { nonNegativeInt, notFound, note, out, withOperator } from "../cli-kit.js";
import { isArgsRef } from "@trias/protocol";

/** A waiting step's arguments on one line: a reference says how to read the bytes. */
function shownArgs(w: { run: string; step: number; args: unknown }): string {
  if (!isArgsRef(w.args)) return JSON.stringify(w.args);
  return `(arguments by reference, ${w.args.bytes} bytes: trias args ${w.run} ${w.step})`;
}

export function registerHuman(program: Command): void {
  program
    .command("pending")
    .description("steps waiting for a human decision")
    .argument("[run]", "only this run")
    .action(async (run: string | undefined) =>
      withOperator(async ({ bus, registry }) => {
        const steps = await pendingHuman(bus, registry, run, (why) => note(why));
        for (const w of steps)
          out(
            `${w.run} step ${w.step} (attempt ${w.attempt}): ${w.tool} ${shownArgs(w)} — tier ${w.tier}, waiting for a human`,
          );
        out(
          `${steps.length} step(s) waiting; decide with: trias approve <run> <step>  |  trias reject <run> <step> --reason <text>`,
        );
      }),
    );

  program
    .command("args")
    .description(
      "a step's arguments as JSON, read back and checked against their digest when they travel by reference (what a person approves)",
    )
    .argument("<run>", "run id")
    .argument("<step>", "step number", nonNegativeInt("step"))
    .action(async (run: string, step: number) =>
      withOperator(async ({ bus, registry }) => {
        const found = await stepArguments(bus, registry, run, step);
        if (!found) throw notFound(`run ${run} has no proposal for step ${step}`);
        if (found.ref)
          note(
            `step ${step}'s arguments travel by reference: ${found.ref.$ref}, ${found.ref.bytes} bytes`,
          );
        out(JSON.stringify(found.args));
      }),
    );

  for (const decision of ["approve", "reject"] as const) {
    const cmd = program
      .command(decision)
      .description(
        `${decision} a step waiting for a human, signed with the human's own key (TRIAS_HUMAN_KEY, or --as <identity> in TRIAS_KEY_DIR)`,
      )
      .argument("<run>", "run id")
      .argument("<step>", "step number", nonNegativeInt("step"))
      .option("--as <human>", "the human identity whose key signs", "human-operator")
      .option(
        "--key <file>",
        "the human's private key file (default: TRIAS_HUMAN_KEY, else --as in TRIAS_KEY_DIR)",
      );
    if (decision === "reject") cmd.requiredOption("--reason <text>", "why, recorded in the trace");
    else cmd.option("--reason <text>", "why, recorded in the trace");
    cmd.action(
      async (run: string, step: number, o: { as: string; key?: string; reason?: string }) => {
        const keyFile = o.key ?? process.env["TRIAS_HUMAN_KEY"];
        const human = keyFile ? Signer.load(keyFile) : loadSigner(operatorKeyDir(), o.as);
        // The human's own NATS user: it may publish human verdicts, nothing else.
        return withOperator(async ({ bus, registry }) => {
          const w = await decideAsHuman(
            bus,
            registry,
            human,
            run,
            step,
            decision,
            o.reason ?? `approved by ${human.name}`,
          );
          out(
            `${decision === "approve" ? "approved" : "rejected"} ${run} step ${w.step}: ${w.tool} ${JSON.stringify(w.args)}, signed by ${human.name}`,
          );
        }, human.name);
      },
    );
  }
}
