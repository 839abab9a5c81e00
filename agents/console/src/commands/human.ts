import type { Command } from "commander";
import { Signer } from "@trias/signing";
import { decideAsHuman, pendingHuman } from "../human.js";
import { loadSigner, operatorKeyDir } from "../connect.js";
import { nonNegativeInt, note, out, withOperator } from "../cli-kit.js";

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
            `${w.run} step ${w.step} (attempt ${w.attempt}): ${w.tool} ${JSON.stringify(w.args)} — tier ${w.tier}, waiting for a human`,
          );
        out(
          `${steps.length} step(s) waiting; decide with: trias approve <run> <step>  |  trias reject <run> <step> --reason <text>`,
        );
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
