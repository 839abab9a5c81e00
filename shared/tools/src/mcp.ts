import { isAbsolute, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StdioClientTransport,
  getDefaultEnvironment,
} from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type { CallToolResult, Tool as McpTool } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Operation } from "@trias/policy";
import { ValidationError, type Check, type JsonObject, type JsonValue } from "@trias/protocol";
import {
  fillTemplate,
  operationFromAnnotations,
  valueAt,
  type McpOutcome,
  type McpServerConfig,
  type McpToolConfig,
} from "./mcp-config.js";
import { defineToolPack, ToolRefusal, type Tool, type ToolContext, type ToolPack } from "./pack.js";

/** One connection to a server, reopened on the next call after it closes (a crash). */
export class McpConnection {
  readonly #server: string;
  readonly #cfg: McpServerConfig;
  readonly #baseDir: string;
  #client: Promise<Client> | null = null;

  constructor(server: string, cfg: McpServerConfig, baseDir: string) {
    this.#server = server;
    this.#cfg = cfg;
    this.#baseDir = baseDir;
  }

  #transport(): Transport {
    if (this.#cfg.url !== undefined)
      return new StreamableHTTPClientTransport(new URL(this.#cfg.url));
    const cmd = this.#cfg.command ?? "";
    return new StdioClientTransport({
      command: cmd.includes("/") && !isAbsolute(cmd) ? resolve(this.#baseDir, cmd) : cmd,
      args: this.#cfg.args,
      env: { ...getDefaultEnvironment(), ...this.#cfg.env },
      cwd: this.#cfg.cwd !== undefined ? resolve(this.#baseDir, this.#cfg.cwd) : this.#baseDir,
      stderr: "ignore",
    });
  }

  client(): Promise<Client> {
    if (this.#client) return this.#client;
    const c = new Client({ name: "trias", version: "0.1.0" });
    const holder: { p: Promise<Client> | null } = { p: null };
    const p = (async () => {
      c.onclose = () => {
        if (this.#client === holder.p) this.#client = null;
      };
      try {
        await c.connect(this.#transport(), { timeout: this.#cfg.startTimeoutMs });
      } catch (e) {
        if (this.#client === holder.p) this.#client = null;
        await c.close().catch(() => undefined);
        throw new ValidationError(
          "config_invalid",
          `MCP server ${this.#server} (${this.#cfg.url ?? this.#cfg.command}) could not be reached: ${(e as Error).message}`,
          { cause: e },
        );
      }
      return c;
    })();
    holder.p = p;
    this.#client = p;
    return p;
  }

  async list(): Promise<McpTool[]> {
    const c = await this.client();
    const out: McpTool[] = [];
    let cursor: string | undefined;
    do {
      const r = await c.listTools(cursor ? { cursor } : {}, {
        timeout: this.#cfg.startTimeoutMs,
      });
      out.push(...r.tools);
      cursor = r.nextCursor;
    } while (cursor);
    return out;
  }

  /** Call a tool; any failure (refusal, timeout, crash, garbage) is a ToolRefusal that says which. */
  async call(tool: string, args: JsonObject): Promise<McpOutcome> {
    let r: CallToolResult;
    try {
      const c = await this.client();
      r = (await c.callTool({ name: tool, arguments: args }, undefined, {
        timeout: this.#cfg.timeoutMs,
      })) as CallToolResult;
    } catch (e) {
      throw new ToolRefusal(
        `MCP ${this.#server}.${tool} failed: ${(e as Error).message} (the effect may or may not have happened)`,
        { cause: e },
      );
    }
    const text = (r.content ?? [])
      .map((c) => (c.type === "text" ? c.text : `[${c.type}]`))
      .join("\n");
    if (r.isError) throw new ToolRefusal(`MCP ${this.#server}.${tool} said: ${text}`);
    const out: McpOutcome = {
      structured: (r.structuredContent as JsonObject | undefined) ?? null,
      text,
    };
    const size = Buffer.byteLength(JSON.stringify(out));
    if (size > this.#cfg.maxResultBytes)
      throw new ToolRefusal(
        `MCP ${this.#server}.${tool} returned ${size} bytes, over the ${this.#cfg.maxResultBytes} allowed (maxResultBytes)`,
      );
    return out;
  }

  async close(): Promise<void> {
    const p = this.#client;
    this.#client = null;
    if (p) await (await p.catch(() => null))?.close().catch(() => undefined);
  }
}

function inputSchemaOf(t: McpTool): z.ZodType {
  try {
    return z.fromJSONSchema(t.inputSchema as Parameters<typeof z.fromJSONSchema>[0]);
  } catch {
    // A schema zod cannot express: the server validates its own input.
    return z.record(z.string(), z.json());
  }
}

interface McpResources {
  conn: McpConnection;
}

/**
 * An MCP server as a tool pack: its tools listed now (a connection opened and closed), each
 * named `<server>.<tool>`. Calls go through the connection the executor opens; the verifier
 * opens its own and makes only the reads the configuration names.
 */
export async function mcpPack(
  server: string,
  cfg: McpServerConfig,
  baseDir: string,
): Promise<ToolPack<McpResources>> {
  let listed: McpTool[] = [];
  for (let attempt = 1; ; attempt++) {
    const lister = new McpConnection(server, cfg, baseDir);
    try {
      listed = await lister.list();
      break;
    } catch (e) {
      // A server process that fails to start once (a loaded machine) gets another chance;
      // the last failure is the one reported.
      if (attempt >= cfg.startAttempts) throw e;
    } finally {
      await lister.close();
    }
  }
  const byName = new Map(listed.map((t) => [t.name, t]));
  for (const name of [...(cfg.include ?? []), ...Object.keys(cfg.tools)]) {
    if (!byName.has(name))
      throw new ValidationError(
        "config_invalid",
        `MCP server ${server} has no tool "${name}" (it lists: ${[...byName.keys()].join(", ")})`,
      );
  }
  const opOf = (name: string) =>
    cfg.tools[name]?.op ?? operationFromAnnotations(byName.get(name)?.annotations);
  for (const [name, tc] of Object.entries(cfg.tools)) {
    for (const v of [...tc.verify, ...(tc.before ? [tc.before] : [])]) {
      if (!byName.has(v.tool))
        throw new ValidationError(
          "config_invalid",
          `MCP ${server}.${name}: the read ${v.tool} is not a tool of ${server}`,
        );
      if (opOf(v.tool) !== "read")
        throw new ValidationError(
          "config_invalid",
          `MCP ${server}.${name}: ${v.tool} is used to read (before/verify) but is not read-only (give it op: read in the config only if it truly is)`,
        );
    }
    if (tc.compensate && !byName.has(tc.compensate.tool))
      throw new ValidationError(
        "config_invalid",
        `MCP ${server}.${name}: the compensation ${tc.compensate.tool} is not a tool of ${server}`,
      );
  }
  const tools: Tool[] = listed
    .filter((t) => cfg.include === undefined || cfg.include.includes(t.name))
    .map((t) => mcpTool(server, t, cfg.tools[t.name], opOf(t.name)));
  return defineToolPack<McpResources>({
    name: server,
    tools,
    open: () => Promise.resolve({ conn: new McpConnection(server, cfg, baseDir) }),
    close: (r) => r.conn.close(),
  });
}

function mcpTool(server: string, t: McpTool, tc: McpToolConfig | undefined, op: Operation): Tool {
  const name = `${server}.${t.name}`;
  const input = inputSchemaOf(t);
  const conn = (ctx: ToolContext) => (ctx.resources as McpResources).conn;
  const call = (c: { tool: string; args: JsonObject }, scope: Record<string, JsonValue>) => {
    const args = fillTemplate(c.args, scope);
    return args === undefined ? null : { tool: c.tool, args: args as JsonObject };
  };
  return {
    name,
    description: t.description ?? t.title ?? t.name,
    input,
    jsonSchema: t.inputSchema,
    output: undefined,
    op,
    domains:
      tc?.domains ?? (t.annotations?.openWorldHint === false ? [server] : [server, "external"]),
    objects: tc?.objects ?? { count: 1 },
    idempotent: t.annotations?.idempotentHint === true,
    async run(args, ctx) {
      let before: JsonValue = null;
      if (tc?.before) {
        const b = call(tc.before, { args });
        if (b) {
          // A read that fails (the file is not there yet) leaves nothing to restore.
          before = await conn(ctx)
            .call(b.tool, b.args)
            .catch(() => null);
        }
      }
      const out = await conn(ctx).call(t.name, args);
      return tc?.before ? { ...out, before } : out;
    },
    compensate(args, result) {
      if (!tc?.compensate) return null;
      const r = result as JsonObject | null;
      if (tc.before && (r?.["before"] ?? null) === null) return null;
      const c = call(tc.compensate, { args, result, before: r?.["before"] ?? null });
      return c ? { tool: `${server}.${c.tool}`, args: c.args } : null;
    },
    async verify(args, result, ctx): Promise<Check[]> {
      if (!tc || tc.verify.length === 0)
        return [
          {
            name: "postconditions declared",
            ok: true,
            detail: `${name} declares no verification read: the server's success is all there is to check`,
          },
        ];
      const checks: Check[] = [];
      for (const v of tc.verify) {
        const c = call(v, { args, result });
        if (!c) throw new Error(`verification read ${v.tool}: a template names a missing value`);
        // A failed read is an unreadable postcondition (uncertain), not a wrong one.
        const read = await conn(ctx).call(c.tool, c.args);
        for (const [path, want] of Object.entries(v.expect)) {
          const expected = fillTemplate(want, { args, result });
          const actual = valueAt(read, path);
          const ok = expected !== undefined && JSON.stringify(actual) === JSON.stringify(expected);
          checks.push({
            name: `${v.tool} ${path}`,
            ok,
            detail: ok
              ? `read back as expected`
              : `read back ${JSON.stringify(actual)?.slice(0, 200)}, expected ${JSON.stringify(expected)?.slice(0, 200)}`,
          });
        }
      }
      return checks;
    },
  };
}
