import { parseArgs } from "node:util";
import { loadPolicy } from "@trias/policy";
import { loadCatalogue } from "@trias/tools";
import { ConsoleClient } from "./client.js";
import { connectOperator, loadSigner } from "./connect.js";
import { McpOptions, serveMcp } from "./mcp.js";
import { policyFileFromEnv } from "./policy-scaffold.js";

/**
 * `trias mcp [--http [--port N] [--host H]] [--upstream <server>]`: Trias as an MCP server,
 * acting as the console identity. Logs go to stderr: on stdio, stdout is the protocol.
 */
export async function mcpCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      http: { type: "boolean" },
      port: { type: "string" },
      host: { type: "string" },
      upstream: { type: "string" },
      "call-timeout-ms": { type: "string" },
    },
  });
  const o = McpOptions.parse({
    transport: values.http ? "http" : "stdio",
    ...(values.port !== undefined ? { port: Number(values.port) } : {}),
    ...(values.host !== undefined ? { host: values.host } : {}),
    ...(values.upstream !== undefined ? { upstream: values.upstream } : {}),
    ...(values["call-timeout-ms"] !== undefined
      ? { callTimeoutMs: Number(values["call-timeout-ms"]) }
      : {}),
  });
  const say = (s: string) => process.stderr.write(`${s}\n`);
  const policy = loadPolicy(policyFileFromEnv());
  // Tool descriptions only: this process never calls an upstream tool, the executor does.
  const { catalogue } = await loadCatalogue({ host: null });
  const { bus, registry, keyDir } = await connectOperator();
  const client = new ConsoleClient(bus, loadSigner(keyDir, "console"), registry);
  const served = await serveMcp({ bus, registry, client, catalogue, policy }, o, say);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", resolve);
    process.once("SIGINT", resolve);
    if (o.transport === "stdio") process.stdin.once("end", resolve);
  });
  await served.close();
  await catalogue.close();
  await bus.drain();
  return 0;
}
