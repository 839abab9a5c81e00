import { isAbsolute, resolve } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import {
  StdioClientTransport,
  getDefaultEnvironment,
} from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { Transport } from "@modelcontextprotocol/sdk/shared/transport.js";
import type {
  CallToolResult,
  Tool as McpTool,
  ToolAnnotations,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { Operation } from "@trias/policy";
import { ValidationError, type Check, type JsonObject, type JsonValue } from "@trias/protocol";
import { defineToolPack, ToolRefusal, type Tool, type ToolContext, type ToolPack } from "./pack.js";

/** A call to one of the same server's tools; `$args.x`, `$result.x`, `$before.x` are filled in. */
export const McpCall = z
  .object({ tool: z.string().min(1), args: z.record(z.string(), z.json()).default({}) })
  .strict();
export type McpCall = z.infer<typeof McpCall>;

export const McpToolConfig = z
  .object({
    /** Overrides the default taken from the tool's annotations (see operationFromAnnotations). */
    op: Operation.optional(),
    domains: z.array(z.string().min(1)).min(1).optional(),
    objects: z
      .union([
        z.object({ count: z.number().int().min(0) }).strict(),
        z.object({ countOf: z.string().min(1) }).strict(),
      ])
      .optional(),
    /**
     * A read made by the executor just before the call; its result is kept in the signed
     * result as `before`, so the compensation can restore what was there.
     */
    before: McpCall.optional(),
    /** The call that undoes this one. Without it a failure after this step escalates. */
    compensate: McpCall.optional(),
    /** Reads the verifier makes after the call; each `expect` path must equal its value. */
    verify: z
      .array(McpCall.extend({ expect: z.record(z.string(), z.json()) }).strict())
      .default([]),
  })
  .strict();
export type McpToolConfig = z.infer<typeof McpToolConfig>;

export const McpServerConfig = z
  .object({
    /** A command that speaks MCP over stdio; relative paths are from the config file. */
    command: z.string().min(1).optional(),
    args: z.array(z.string()).default([]),
    env: z.record(z.string(), z.string()).default({}),
    cwd: z.string().optional(),
    /** A Streamable HTTP endpoint instead of a command. */
    url: z.url().optional(),
    /**
     * How long one call may take before it fails (an effect whose call timed out is
     * reported as a tool failure, and recovery decides). @default 30000
     */
    timeoutMs: z.number().int().positive().default(30_000),
    /** A result larger than this (as JSON) fails the call: results travel in signed frames. @default 262144 */
    maxResultBytes: z
      .number()
      .int()
      .positive()
      .default(256 * 1024),
    /** Only these tools of the server; all when absent. */
    include: z.array(z.string().min(1)).optional(),
    tools: z.record(z.string(), McpToolConfig).default({}),
  })
  .strict()
  .refine((s) => (s.command === undefined) !== (s.url === undefined), {
    message: "an MCP server needs exactly one of `command:` (stdio) or `url:` (Streamable HTTP)",
  });
export type McpServerConfig = z.infer<typeof McpServerConfig>;

/**
 * Pure: the operation class a tool gets when the policy says nothing else (the default
 * `trias policy scaffold` prints). MCP annotations are hints from the server; absent ones
 * take the MCP defaults (not read-only, destructive, not idempotent), the strictest class.
 */
export function operationFromAnnotations(a: ToolAnnotations | undefined): Operation {
  if (a?.readOnlyHint === true) return "read";
  if (a?.destructiveHint === false) return "write";
  if (a?.idempotentHint === true) return "delete";
  return "irreversible";
}

/** A call's outcome as Trias records it: the structured content if any, and the text. */
export interface McpOutcome {
  structured: JsonObject | null;
  text: string;
  [k: string]: JsonValue;
}

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
        await c.connect(this.#transport(), { timeout: this.#cfg.timeoutMs });
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
      const r = await c.listTools(cursor ? { cursor } : {}, { timeout: this.#cfg.timeoutMs });
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

/**
 * Pure: fill a template. A string `$a.b.c` is the value at that path in `scope` (`$$x` is
 * the literal `$x`); anything else is kept. Undefined when a path is missing.
 */
export function fillTemplate(
  t: JsonValue,
  scope: Record<string, JsonValue>,
): JsonValue | undefined {
  if (typeof t === "string") {
    if (t.startsWith("$$")) return t.slice(1);
    if (!t.startsWith("$")) return t;
    return valueAt(scope, t.slice(1));
  }
  if (Array.isArray(t)) {
    const out: JsonValue[] = [];
    for (const x of t) {
      const v = fillTemplate(x, scope);
      if (v === undefined) return undefined;
      out.push(v);
    }
    return out;
  }
  if (t !== null && typeof t === "object") {
    const out: JsonObject = {};
    for (const [k, x] of Object.entries(t)) {
      const v = fillTemplate(x, scope);
      if (v === undefined) return undefined;
      out[k] = v;
    }
    return out;
  }
  return t;
}

export function valueAt(scope: unknown, path: string): JsonValue | undefined {
  let cur: unknown = scope;
  for (const part of path.split(".")) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur === undefined ? undefined : (cur as JsonValue);
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
  const lister = new McpConnection(server, cfg, baseDir);
  let listed: McpTool[];
  try {
    listed = await lister.list();
  } finally {
    await lister.close();
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
