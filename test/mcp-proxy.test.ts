import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import type { CallToolResult } from "@modelcontextprotocol/sdk/types.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { decideAsHuman } from "@trias/console";
import { waitFor } from "@trias/testing";
import { REPO, policyVariant, startHarness, type Harness } from "./helpers/harness.js";
import { FS_SERVER, userProject, writeConfig } from "./helpers/tool-project.js";
import { MCP_READY_MS } from "./helpers/tool-project.js";

const CLI = join(REPO, "agents", "console", "dist", "cli.js");

const textOf = (r: unknown) =>
  ((r as CallToolResult).content ?? []).map((c) => (c.type === "text" ? c.text : "")).join("\n");

/**
 * `trias mcp --upstream fs` as a governing proxy in front of the filesystem server, reached
 * by the MCP SDK's own client over stdio and over Streamable HTTP. The proxy only submits
 * tasks: the executor is the one process that calls the filesystem server.
 */
describe("trias mcp: a governing proxy", () => {
  let h: Harness;
  let dir: string;
  let files: string;
  let env: Record<string, string>;
  beforeAll(async () => {
    dir = userProject();
    files = join(dir, "files");
    mkdirSync(files);
    const config = writeConfig(dir, {
      version: 1,
      mcp: {
        fs: {
          command: process.execPath,
          args: [FS_SERVER, files],
          include: ["read_text_file", "write_file"],
          tools: {
            write_file: {
              verify: [
                {
                  tool: "read_text_file",
                  args: { path: "$args.path" },
                  expect: { "structured.content": "$args.content" },
                },
              ],
            },
          },
        },
      },
    });
    const policyFile = policyVariant("dev", "proxy", (doc) => {
      const tools = doc["tools"] as Record<string, unknown>;
      tools["fs.read_text_file"] = { op: "read", objects: { count: 1 }, domains: ["files"] };
      tools["fs.write_file"] = {
        op: "write",
        objects: { count: 1 },
        domains: ["files"],
        checks: [
          {
            id: "no-sql-in-files",
            when: 'args.content.contains("DROP TABLE")',
            message: "SQL statements are not written to shared files",
          },
        ],
      };
      (doc["rules"] as unknown[]).push(
        {
          id: "no-secret-files",
          when: 'tool == "fs.write_file" && args.path.contains("secret")',
          deny: "files named secret are never written by an agent",
        },
        {
          id: "file-writes-are-reviewed",
          when: 'tool == "fs.write_file"',
          tier: "standard",
        },
        {
          id: "file-writes-need-a-human",
          when: 'tool == "fs.write_file"',
          require: { human: true },
        },
      );
    });
    h = await startHarness({
      policyFile,
      env: { TRIAS_CONFIG: config },
      readyTimeoutMs: MCP_READY_MS,
    });
    const creds = h.stack.natsCredentials("admin");
    env = {
      ...(process.env as Record<string, string>),
      NATS_URL: h.stack.natsUrl,
      ...(creds.user ? { NATS_USER: creds.user } : {}),
      ...(creds.pass ? { NATS_PASSWORD: creds.pass } : {}),
      TRIAS_KEY_DIR: h.keyDir,
      TRIAS_CONFIG: config,
      TRIAS_POLICY: policyFile,
    };
  }, MCP_READY_MS + 60_000);
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  async function governs(client: Client, tag: string): Promise<void> {
    const { tools } = await client.listTools();
    const names = tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(["read_text_file", "write_file"]));
    expect(names).toContain("trias_run_status");

    // A read passes: light tier, executed by the executor, verified, result returned.
    const path = join(files, `${tag}.txt`);
    writeFileSync(path, `hello ${tag}\n`);
    const read = await client.callTool({ name: "read_text_file", arguments: { path } });
    expect(read.isError).toBeFalsy();
    expect(textOf(read)).toBe(`hello ${tag}\n`);

    // A write waits for review: the client is told which run to follow.
    const write = await client.callTool({
      name: "write_file",
      arguments: { path, content: `changed ${tag}\n` },
    });
    expect(write.isError).toBe(true);
    const run = /run (run-[a-z0-9-]+)/.exec(textOf(write))?.[1];
    expect(textOf(write)).toMatch(/waiting for a human/);
    expect(run).toBeDefined();
    expect(readFileSync(path, "utf8")).toBe(`hello ${tag}\n`);
    const status = await client.callTool({ name: "trias_run_status", arguments: { run } });
    expect(textOf(status)).toMatch(/waiting for a human: step 0 \(fs.write_file/);
    await decideAsHuman(
      h.bus,
      h.registry,
      h.signer("human-operator"),
      run ?? "",
      0,
      "approve",
      "looks right",
    );
    const closed = await h.client.waitForClose([run ?? ""], 30_000);
    expect(closed.get(run ?? "")?.body.outcome).toBe("completed");
    expect(readFileSync(path, "utf8")).toBe(`changed ${tag}\n`);

    // A denied call returns the rule.
    const denied = await client.callTool({
      name: "write_file",
      arguments: { path: join(files, `secret-${tag}.txt`), content: "x" },
    });
    expect(denied.isError).toBe(true);
    expect(textOf(denied)).toMatch(/denied by the proxy policy: rule no-secret-files/);

    // A call the rules reviewer rejects returns the reviewer and its reason.
    const rejected = await client.callTool({
      name: "write_file",
      arguments: { path, content: "DROP TABLE users;" },
    });
    expect(rejected.isError).toBe(true);
    expect(textOf(rejected)).toMatch(
      /rejected by reviewer reviewer-\d \(rules, said reject\): no-sql-in-files: SQL statements/,
    );
    expect(readFileSync(path, "utf8")).toBe(`changed ${tag}\n`);

    // Why a step gets its tier.
    const why = await client.callTool({
      name: "trias_explain_tier",
      arguments: { tool: "fs.write_file", args: { path, content: "y" } },
    });
    expect(textOf(why)).toMatch(/file-writes-need-a-human/);
  }

  it("over stdio, via the SDK client: a read passes, a write waits for review and a human, a rejected call names the reviewer, a denied call returns the rule", async () => {
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [CLI, "mcp", "--upstream", "fs"],
      env,
      stderr: "pipe",
    });
    const client = new Client({ name: "test-ide", version: "1.0.0" });
    await client.connect(transport);
    try {
      await governs(client, "stdio");
    } finally {
      await client.close();
    }
  });

  it("over Streamable HTTP, via the SDK client: the same", async () => {
    const child: ChildProcess = spawn(
      process.execPath,
      [CLI, "mcp", "--http", "--port", "0", "--upstream", "fs"],
      { env, stdio: ["ignore", "ignore", "pipe"] },
    );
    let err = "";
    child.stderr?.on("data", (b: Buffer) => (err += b.toString()));
    try {
      const url = await waitFor(
        "the proxy's URL",
        () => Promise.resolve(/listening on (http:\/\/\S+)/.exec(err)?.[1]),
        20_000,
      );
      const client = new Client({ name: "test-http", version: "1.0.0" });
      await client.connect(new StreamableHTTPClientTransport(new URL(url)));
      try {
        await governs(client, "http");
      } finally {
        await client.close();
      }
    } finally {
      child.kill("SIGTERM");
    }
  });
});
