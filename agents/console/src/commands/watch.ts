import type { Command } from "commander";
import { onShutdown } from "@trias/supervise";
import { ConsoleClient } from "../client.js";
import { connectOperator, loadSigner } from "../connect.js";
import { describe } from "../format.js";
import { out } from "../cli-kit.js";

export function registerWatch(program: Command): void {
  program
    .command("watch")
    .description("follow the trace as it is written (until Ctrl-C)")
    .argument("[run]", "only this run")
    .action(async (run: string | undefined) => {
      const { bus, registry, keyDir } = await connectOperator();
      onShutdown(() => bus.drain());
      const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
      const sub = await client.follow((o, raw, err) => {
        if (run && !raw.subject.endsWith(`.${run}`)) return;
        const line = o
          ? describe(o.message, o.key)
          : `unverifiable message on ${raw.subject}: ${String((err as Error)?.message ?? err)}`;
        if (line) out(line);
      }, 1);
      // Runs until a signal: the shutdown hook drains the connection and exits 130/143.
      await sub.closed;
    });
}
