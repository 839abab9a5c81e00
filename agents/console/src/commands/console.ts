import type { Command } from "commander";
import { onShutdown } from "@trias/supervise";
import { connectOperator } from "../connect.js";
import { ConsoleServer } from "../web/server.js";
import { join } from "node:path";
import { REGISTRY_FILE } from "@trias/signing";
import { nonNegativeInt, out } from "../cli-kit.js";

export function registerConsole(program: Command): void {
  program
    .command("console")
    .description(
      "the web console on localhost: runs (live), each step, approvals signed in the browser, policies, keys (until Ctrl-C)",
    )
    .option("--port <port>", "port on 127.0.0.1 (0: any free port)", nonNegativeInt("--port"), 0)
    .action(async (o: { port: number }) => {
      const { bus, registry, keyDir } = await connectOperator();
      const server = new ConsoleServer({
        bus,
        registry,
        registryFile: join(keyDir, REGISTRY_FILE),
        port: o.port,
      });
      onShutdown(async () => {
        await server.stop();
        await bus.drain();
      });
      out(`console at ${await server.start()}`);
      // Serves until a signal: the shutdown hook stops the server and drains the connection.
      await new Promise<never>(() => undefined);
    });
}
