import type { Command } from "commander";
import { ConsoleClient } from "../client.js";
import { loadSigner } from "../connect.js";
import { describe } from "../format.js";
import { EXIT, jsonArg, out, withOperator } from "../cli-kit.js";
import { sealTaskInput, subjectKeys } from "../privacy.js";
import type { JsonObject } from "@trias/protocol";

const PROGRAM_HINT =
  "balance-check, transfer, refund, payout, close-account, kyc, noop, steps (kyc: personal fields are sealed here, docs/privacy.md)";

/**
 * How long `submit --wait` follows a run before giving up.
 * @default 600000 (ten minutes: a run may wait for humans)
 */
const WAIT_MS = 10 * 60_000;

export function registerSubmit(program: Command): void {
  program
    .command("submit")
    .description("submit a task as the console (signed with the console's key)")
    .argument("<program>", `the proposer's program: ${PROGRAM_HINT}`)
    .argument(
      "[input-json]",
      "the program's input",
      jsonArg("input", `trias submit transfer '{"from":"alice","to":"bob","amount":5}'`),
      {},
    )
    .option("--wait", "follow the run until it closes; exit 0 only if it completed")
    .option("--goal <text>", "the task's goal, as shown in the trace")
    .option(
      "--requested-by <identity>",
      "who asks for the run; that identity may not approve its steps",
      process.env["USER"] ?? "cli",
    )
    .action(
      async (
        program: string,
        input: unknown,
        o: { wait?: boolean; goal?: string; requestedBy: string },
      ) =>
        withOperator(async ({ bus, registry, keyDir }) => {
          const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
          const { run, seq } = await client.submit({
            goal: o.goal ?? `${program} from the CLI`,
            program,
            input: await sealTaskInput(() => subjectKeys(bus), input as JsonObject),
            requestedBy: o.requestedBy,
          });
          out(`submitted ${run}`);
          if (!o.wait) return;
          const closed = await client.waitForClose(
            [run],
            WAIT_MS,
            (m) => {
              const line = m && describe(m.message, m.key);
              if (line) out(line);
            },
            seq,
          );
          process.exitCode = closed.get(run)?.body.outcome === "completed" ? EXIT.ok : EXIT.failed;
        }),
    );
}
