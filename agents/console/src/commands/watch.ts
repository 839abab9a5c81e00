import type { Command } from "commander";
import type { StoredMessage } from "@trias/bus";
import { runFilter } from "@trias/protocol";
import { onShutdown } from "@trias/supervise";
import { ConsoleClient } from "../client.js";
import { connectOperator, loadSigner } from "../connect.js";
import { describe } from "../format.js";
import { fullReadNote, out } from "../cli-kit.js";

export function registerWatch(program: Command): void {
  program
    .command("watch")
    .description("follow the trace as it is written (until Ctrl-C)")
    .argument("[run]", "only this run")
    .action(async (run: string | undefined) => {
      const { bus, registry, keyDir } = await connectOperator();
      onShutdown(() => bus.drain());
      const show = (raw: StoredMessage): void => {
        let line: string | null;
        try {
          const o = registry.open(raw.data);
          line = describe(o.message, o.key);
        } catch (err) {
          line = `unverifiable message on ${raw.subject}: ${String((err as Error)?.message ?? err)}`;
        }
        if (line) out(line);
      };
      if (run) {
        // The run so far from its start (not a scan of the whole trace), then what comes after.
        const r = await bus.readRun(run);
        if (r.fallback !== null && r.messages.length > 0) fullReadNote(run)(r.fallback);
        const shown = new Set<number>();
        for (const m of r.messages) {
          shown.add(m.seq);
          show(m);
        }
        const sub = await bus.watch(
          runFilter(run),
          (m) => {
            if (!shown.has(m.seq)) show(m);
          },
          { fromSeq: r.lastSeq + 1 },
        );
        await sub.closed;
        return;
      }
      const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
      const sub = await client.follow((o, raw, err) => {
        const line = o
          ? describe(o.message, o.key)
          : `unverifiable message on ${raw.subject}: ${String((err as Error)?.message ?? err)}`;
        if (line) out(line);
      }, 1);
      // Runs until a signal: the shutdown hook drains the connection and exits 130/143.
      await sub.closed;
    });
}
