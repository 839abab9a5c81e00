import type { Command } from "commander";
import { loadPolicy } from "@trias/policy";
import { onShutdown } from "@trias/supervise";
import { loadCatalogue } from "@trias/tools";
import { ConsoleClient } from "../client.js";
import { out } from "../cli-kit.js";
import { connectOperator, loadSigner } from "../connect.js";
import { policyFileFromEnv, scaffold } from "../policy-scaffold.js";

/** `trias policy scaffold` and `trias mcp`: the commands of the tool packs (docs/tools.md). */
export function registerTools(program: Command): void {
  const policy =
    program.commands.find((c) => c.name() === "policy") ??
    program.command("policy").description("check, explain and compare policies");
  policy
    .command("scaffold")
    .description(
      "policy entries for the loaded tools (trias.config.yaml or TRIAS_CONFIG) the policy does not rate yet",
    )
    .option("--policy <file>", "the policy to complete (default: TRIAS_POLICY, else TRIAS_ENV's)")
    .option("--full", "print the whole policy with the entries added, comments kept")
    .action(async (o: { policy?: string; full?: boolean }) =>
      out(await scaffold(o.policy ?? policyFileFromEnv(), o.full ?? false)),
    );
  program
    .command("mcp")
    .description(
      "Trias as an MCP server: control tools (submit, status, trace, approvals, tiers) and, with --upstream, a governing proxy for a configured MCP server",
    )
    .option("--http", "serve Streamable HTTP instead of stdio")
    .option("--host <host>", "HTTP address to bind (default 127.0.0.1)")
    .option("--port <n>", "HTTP port (default 0: a free one, printed on stderr)")
    .option("--upstream <server>", "the configured MCP server whose tools are offered, governed")
    .option(
      "--call-timeout-ms <n>",
      "how long a governed call may take before the client is told to follow the run",
    )
    .action(
      async (v: {
        http?: boolean;
        host?: string;
        port?: string;
        upstream?: string;
        callTimeoutMs?: string;
      }) => {
        // Loaded on demand: the MCP SDK is not part of every CLI command's start-up.
        const { McpOptions, serveMcp } = await import("../mcp.js");
        const o = McpOptions.parse({
          transport: v.http ? "http" : "stdio",
          ...(v.port !== undefined ? { port: Number(v.port) } : {}),
          ...(v.host !== undefined ? { host: v.host } : {}),
          ...(v.upstream !== undefined ? { upstream: v.upstream } : {}),
          ...(v.callTimeoutMs !== undefined ? { callTimeoutMs: Number(v.callTimeoutMs) } : {}),
        });
        const policyDoc = loadPolicy(policyFileFromEnv());
        // Tool descriptions only: this process never calls an upstream tool, the executor does.
        const { catalogue } = await loadCatalogue({ host: null });
        const { bus, registry, keyDir } = await connectOperator();
        const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
        // On stdio, stdout is the protocol: say things on stderr.
        const served = await serveMcp(
          { bus, registry, client, catalogue, policy: policyDoc },
          o,
          (s) => process.stderr.write(`${s}\n`),
        );
        const stop = async () => {
          await served.close();
          await catalogue.close();
          await bus.drain();
        };
        onShutdown(stop);
        // Stdio: the client closing our stdin ends the session. HTTP: until a signal.
        if (o.transport === "stdio") {
          await new Promise<void>((r) => process.stdin.once("end", r));
          await stop();
        } else await new Promise<never>(() => undefined);
      },
    );
}
