import type { ToolAnnotations } from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import { Operation } from "@trias/policy";
import type { JsonObject, JsonValue } from "@trias/protocol";

// The MCP configuration and the pure functions on it: no SDK code is loaded here, so the
// CLI and agents without MCP servers start without it (mcp.ts loads it on demand).

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
    /**
     * How long starting (or reaching) the server and listing its tools may take: a server
     * process on a loaded machine starts slowly. @default 60000
     */
    startTimeoutMs: z.number().int().positive().default(60_000),
    /** Attempts to start the server and list its tools before the configuration is refused. @default 3 */
    startAttempts: z.number().int().min(1).max(10).default(3),
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
