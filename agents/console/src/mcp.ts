import { createServer, type Server as HttpServer } from "node:http";
import type { AddressInfo } from "node:net";
import { Server } from "@modelcontextprotocol/sdk/server/index.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import {
  CallToolRequestSchema,
  ListToolsRequestSchema,
  type CallToolResult,
  type Tool as McpTool,
} from "@modelcontextprotocol/sdk/types.js";
import { z } from "zod";
import type { Bus } from "@trias/bus";
import { explainStep, type LoadedPolicy } from "@trias/policy";
import { ValidationError, type JsonObject, type JsonValue, type MessageOf } from "@trias/protocol";
import type { KeyRegistry, Opened } from "@trias/signing";
import type { Catalogue, ToolDef } from "@trias/tools";
import { type ConsoleClient, newRunId } from "./client.js";
import { pendingHuman } from "./human.js";

export const McpOptions = z
  .object({
    /** Serve MCP on stdin/stdout (an IDE starts `trias mcp`), or over Streamable HTTP. */
    transport: z.enum(["stdio", "http"]).default("stdio"),
    /** Loopback by default: the control surface submits tasks as the console. @default "127.0.0.1" */
    host: z.string().default("127.0.0.1"),
    /** 0 picks a free port (printed on stderr). @default 0 */
    port: z.number().int().min(0).max(65_535).default(0),
    /** The configured MCP server whose tools are offered, each call governed; none: control surface only. */
    upstream: z.string().optional(),
    /** How long a governed call may take before the client is told to follow the run. @default 120000 */
    callTimeoutMs: z.number().int().positive().default(120_000),
    /** How often a governed call's run is read while it is under way. @default 100 */
    pollMs: z.number().int().positive().default(100),
  })
  .strict();
export type McpOptions = z.infer<typeof McpOptions>;

export interface McpDeps {
  bus: Bus;
  registry: KeyRegistry;
  client: ConsoleClient;
  catalogue: Catalogue;
  policy: LoadedPolicy;
}

const CONTROL_TOOLS: McpTool[] = [
  {
    name: "trias_submit_task",
    description:
      "Submit a task to Trias (a program and its input). Returns the run id; follow it with trias_run_status.",
    inputSchema: {
      type: "object",
      properties: {
        goal: { type: "string" },
        program: { type: "string", description: "e.g. steps, transfer, balance-check" },
        input: { type: "object" },
      },
      required: ["goal", "program", "input"],
    },
  },
  {
    name: "trias_run_status",
    description: "A run's state: open or closed (and how), and each step's latest event.",
    inputSchema: { type: "object", properties: { run: { type: "string" } }, required: ["run"] },
  },
  {
    name: "trias_run_trace",
    description: "Every signed event of a run, in order, with who signed it.",
    inputSchema: { type: "object", properties: { run: { type: "string" } }, required: ["run"] },
  },
  {
    name: "trias_pending_approvals",
    description: "Steps waiting for a human decision (in one run, or all).",
    inputSchema: { type: "object", properties: { run: { type: "string" } } },
  },
  {
    name: "trias_explain_tier",
    description:
      "Why a step gets its tier under the loaded policy: score terms, matched rules, reviewers required.",
    inputSchema: {
      type: "object",
      properties: { tool: { type: "string" }, args: { type: "object" } },
      required: ["tool"],
    },
  },
];

const SubmitArgs = z.object({
  goal: z.string().min(1),
  program: z.string().min(1),
  input: z.record(z.string(), z.json()),
});
const RunArgs = z.object({ run: z.string().min(1) });
const ExplainArgs = z.object({
  tool: z.string().min(1),
  args: z.record(z.string(), z.json()).default({}),
});

const text = (t: string, isError = false): CallToolResult => ({
  content: [{ type: "text", text: t }],
  ...(isError ? { isError: true } : {}),
});

async function openRun(d: McpDeps, run: string): Promise<Opened[]> {
  const out: Opened[] = [];
  const read = await d.bus.readRun(run);
  if (read.fallback !== null && read.messages.length > 0)
    d.client.host.log.warn({ run, why: read.fallback }, "run read from the start of the trace");
  for (const s of read.messages) {
    try {
      out.push(d.registry.open(s.data));
    } catch {
      // Unverifiable messages were refused by the agents; they say nothing about the run.
    }
  }
  return out;
}

function line(o: Opened): string {
  const m = o.message;
  const at = m.step === null ? "" : ` step ${m.step}.${m.attempt}`;
  const what = (() => {
    switch (m.kind) {
      case "task_submitted":
        return `${m.body.program}: ${m.body.goal}`;
      case "step_proposed":
        return `${m.body.tool} ${JSON.stringify(m.body.args).slice(0, 120)}`;
      case "tier_assigned":
        return m.body.denied ? `denied: ${m.body.denied}` : `tier ${m.body.tier}`;
      case "verdict":
        return `${m.body.decision} (${m.body.strategy}): ${m.body.reasons.join("; ")}`;
      case "step_executed":
        return `${m.body.tool} ${m.body.outcome}${m.body.error ? `: ${m.body.error}` : ""}`;
      case "step_verified":
        return `${m.body.verdict}`;
      case "recovery_decided":
        return `${m.body.action}: ${m.body.reason}`;
      case "run_closed":
        return `${m.body.outcome}: ${m.body.reason}`;
      case "message_rejected":
        return `refused ${m.body.code}: ${m.body.reason}`;
      case "subject_erased":
        return `erased the personal data of ${m.body.subject}: ${m.body.reason}`;
      case "step_held":
        return `held until ${new Date(m.body.until).toISOString()}: ${m.body.reason}`;
    }
  })();
  return `${m.kind}${at} [${o.key.name}] ${what}`;
}

/**
 * Pure: what a governed call has come to, from its run's signed events so far. `null` while
 * it is still under way. The client gets the verified result, or a reason it can act on.
 */
export function callOutcome(
  run: string,
  events: readonly Opened[],
  waitingHuman: boolean,
): CallToolResult | null {
  const msgs = events.map((o) => o.message);
  const denied = msgs.find(
    (m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned" && m.body.denied !== null,
  );
  if (denied)
    return text(`denied by the ${denied.body.environment} policy: ${denied.body.denied}`, true);
  const veto = events.find(
    (o) => o.message.kind === "verdict" && o.message.body.decision !== "approve",
  );
  if (veto && veto.message.kind === "verdict")
    return text(
      `rejected by reviewer ${veto.key.name} (${veto.message.body.strategy}, said ${veto.message.body.decision}): ${veto.message.body.reasons.join("; ")} [run ${run}]`,
      true,
    );
  const closed = msgs.find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed");
  if (closed) {
    const executed = msgs.filter(
      (m): m is MessageOf<"step_executed"> =>
        m.kind === "step_executed" && m.body.compensationOf === null,
    );
    const last = executed.at(-1);
    if (closed.body.outcome === "completed" && last?.body.outcome === "ok") {
      const verified = msgs.some(
        (m) =>
          m.kind === "step_verified" &&
          m.body.digest === last.body.digest &&
          m.body.verdict === "passed",
      );
      if (verified) return resultOf(last.body.result);
    }
    const err = last?.body.error ? ` (the tool said: ${last.body.error})` : "";
    return text(`run ${run} ${closed.body.outcome}: ${closed.body.reason}${err}`, true);
  }
  // A human is asked only once the step's automated reviewers have all answered (a veto
  // from one of them is the answer, above).
  const assigned = msgs.filter(
    (m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned" && m.body.denied === null,
  );
  const current = assigned.at(-1);
  const reviewed = current
    ? msgs.filter(
        (m) =>
          m.kind === "verdict" &&
          m.body.digest === current.body.digest &&
          m.body.strategy !== "human",
      ).length >= current.body.requires.reviewers
    : false;
  if (waitingHuman && reviewed)
    return text(
      `waiting for a human: the call is step 0 of run ${run}, which needs a human's approval (\`trias approve ${run} 0\`); follow it with trias_run_status {"run": "${run}"}`,
      true,
    );
  return null;
}

/** The upstream's answer as the executor recorded it (see McpOutcome in @trias/tools). */
function resultOf(result: JsonValue): CallToolResult {
  const r = (result ?? {}) as { text?: unknown; structured?: unknown };
  const out: CallToolResult = {
    content: [
      {
        type: "text",
        text: typeof r.text === "string" ? r.text : JSON.stringify(result),
      },
    ],
  };
  if (r.structured && typeof r.structured === "object")
    out.structuredContent = r.structured as Record<string, unknown>;
  return out;
}

/** One governed call: proposed on the client's behalf, then routed, reviewed, executed, verified. */
async function governedCall(
  d: McpDeps,
  o: McpOptions,
  tool: ToolDef,
  args: JsonObject,
  clientName: string,
): Promise<CallToolResult> {
  const run = newRunId();
  await d.client.submit(
    {
      goal: `${tool.name} on behalf of MCP client ${clientName}`,
      program: "steps",
      input: {
        steps: [
          {
            tool: tool.name,
            args,
            rationale: `called by MCP client ${clientName} through the Trias proxy`,
            expected: `${tool.name} succeeds`,
          },
        ],
      },
      requestedBy: `mcp:${clientName}`,
    },
    run,
  );
  const deadline = Date.now() + o.callTimeoutMs;
  for (;;) {
    const events = await openRun(d, run);
    const needsHuman = events.some(
      (e) =>
        e.message.kind === "tier_assigned" &&
        e.message.body.requires.human &&
        e.message.body.denied === null,
    );
    const waiting = needsHuman && (await pendingHuman(d.bus, d.registry, run)).length > 0;
    const done = callOutcome(run, events, waiting);
    if (done) return done;
    if (Date.now() > deadline)
      return text(
        `still under way after ${o.callTimeoutMs} ms: follow run ${run} with trias_run_status`,
        true,
      );
    await new Promise((r) => setTimeout(r, o.pollMs));
  }
}

async function control(d: McpDeps, name: string, raw: unknown): Promise<CallToolResult> {
  switch (name) {
    case "trias_submit_task": {
      const a = SubmitArgs.parse(raw);
      const run = newRunId();
      await d.client.submit(
        { goal: a.goal, program: a.program, input: a.input, requestedBy: "mcp" },
        run,
      );
      return text(`submitted run ${run}`);
    }
    case "trias_run_status": {
      const { run } = RunArgs.parse(raw);
      const events = await openRun(d, run);
      if (events.length === 0) return text(`no run ${run} in the trace`, true);
      const closed = events.find((e) => e.message.kind === "run_closed");
      const byStep = new Map<number, Opened>();
      for (const e of events) if (e.message.step !== null) byStep.set(e.message.step, e);
      const pending = await pendingHuman(d.bus, d.registry, run);
      return text(
        [
          closed ? line(closed) : `run ${run} is open`,
          ...[...byStep.values()].map(line),
          ...pending.map((p) => `waiting for a human: step ${p.step} (${p.tool}, ${p.tier} tier)`),
        ].join("\n"),
      );
    }
    case "trias_run_trace": {
      const { run } = RunArgs.parse(raw);
      return text((await openRun(d, run)).map(line).join("\n") || `no run ${run} in the trace`);
    }
    case "trias_pending_approvals": {
      const { run } = z.object({ run: z.string().optional() }).parse(raw ?? {});
      const pending = await pendingHuman(d.bus, d.registry, run, (why) =>
        d.client.host.log.warn({ why }, "pending approvals read from the start of the trace"),
      );
      return text(
        pending
          .map(
            (p) =>
              `${p.run} step ${p.step}: ${p.tool} ${JSON.stringify(p.args).slice(0, 120)} (${p.tier})`,
          )
          .join("\n") || "nothing waits for a human",
      );
    }
    case "trias_explain_tier": {
      const a = ExplainArgs.parse(raw);
      return text(explainStep(d.policy, { tool: a.tool, args: a.args }));
    }
  }
  return text(`no tool named ${name}`, true);
}

function mcpServer(d: McpDeps, o: McpOptions): Server {
  const proxied = o.upstream ? d.catalogue.tools().filter((t) => t.pack === o.upstream) : [];
  const prefix = o.upstream ? `${o.upstream}.` : "";
  const server = new Server(
    { name: "trias", version: "0.1.0" },
    {
      capabilities: { tools: {} },
      instructions: o.upstream
        ? `Every call to a ${o.upstream} tool is a governed step: routed by policy, reviewed, executed by the Trias executor and verified.`
        : "The Trias control surface.",
    },
  );
  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: [
      ...proxied.map((t) => ({
        name: t.name.slice(prefix.length),
        description: t.description,
        inputSchema: { type: "object" as const, ...t.jsonSchema },
      })),
      ...CONTROL_TOOLS,
    ],
  }));
  server.setRequestHandler(CallToolRequestSchema, async (req) => {
    const { name } = req.params;
    const args = (req.params.arguments ?? {}) as JsonObject;
    try {
      const tool = proxied.find((t) => t.name === prefix + name);
      if (tool) {
        const who = server.getClientVersion()?.name ?? "unknown";
        return await governedCall(d, o, tool, args, who);
      }
      return await control(d, name, args);
    } catch (e) {
      const msg = e instanceof z.ZodError ? z.prettifyError(e) : (e as Error).message;
      return text(`trias: ${msg}`, true);
    }
  });
  return server;
}

/** Serve until the transport closes (stdio) or the process is stopped (HTTP). */
export async function serveMcp(
  d: McpDeps,
  o: McpOptions,
  say: (line: string) => void,
): Promise<{ url: string | null; close: () => Promise<void> }> {
  if (o.upstream && !d.catalogue.packs().includes(o.upstream))
    throw new ValidationError(
      "config_invalid",
      `--upstream ${o.upstream}: no MCP server of that name in the configuration (loaded packs: ${d.catalogue.packs().join(", ")})`,
    );
  if (o.transport === "stdio") {
    const server = mcpServer(d, o);
    await server.connect(new StdioServerTransport());
    return { url: null, close: () => server.close() };
  }
  const http: HttpServer = createServer((req, res) => {
    if (req.url?.split("?")[0] !== "/mcp") {
      res.writeHead(404).end();
      return;
    }
    if (req.method !== "POST") {
      // Stateless: no server-initiated stream, no session to end.
      res.writeHead(405, { allow: "POST" }).end();
      return;
    }
    const server = mcpServer(d, o);
    const transport = new StreamableHTTPServerTransport({});
    res.on("close", () => {
      void transport.close();
      void server.close();
    });
    void server
      .connect(transport)
      .then(() => transport.handleRequest(req, res))
      .catch((e: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String((e as Error).message));
      });
  });
  await new Promise<void>((r) => http.listen(o.port, o.host, r));
  const port = (http.address() as AddressInfo).port;
  const url = `http://${o.host}:${port}/mcp`;
  say(`trias mcp: listening on ${url}`);
  return {
    url,
    close: () => new Promise<void>((r) => http.close(() => r())),
  };
}
