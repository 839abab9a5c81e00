import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StdioClientTransport } from "@modelcontextprotocol/sdk/client/stdio.js";
import { ConsoleClient, Stack } from "@trias/console";
import { shippedPolicyFile } from "@trias/policy";
import { KeyRegistry, Signer, keyFileName } from "@trias/signing";
import { dist, type Dist } from "./stats.js";

export interface McpBenchResult {
  name: string;
  calls: number;
  /** Submission to the closed run's receipt: routed, executed, verified by a read-back. */
  governedMs: Dist;
  /** The same call made by an MCP SDK client straight to the server. */
  directMs: Dist;
}

/** Calls made before measuring, so both paths have warm connections and JIT. */
const WARMUP_CALLS = 3;

const FS_SERVER = createRequire(import.meta.url).resolve(
  "@modelcontextprotocol/server-filesystem/dist/index.js",
);

/**
 * One governed MCP tool call (the filesystem server's read_text_file, light tier: no
 * reviewer) against the same call made directly by an SDK client, one at a time, in one run.
 */
export async function benchMcp(calls = 50): Promise<McpBenchResult> {
  const dir = mkdtempSync(join(tmpdir(), "trias-bench-mcp-"));
  const files = join(dir, "files");
  mkdirSync(files);
  const path = join(files, "a.txt");
  writeFileSync(path, "hello\n");
  const config = join(dir, "trias.config.yaml");
  writeFileSync(
    config,
    JSON.stringify({
      version: 1,
      mcp: {
        fs: {
          command: process.execPath,
          args: [FS_SERVER, files],
          include: ["read_text_file"],
          tools: {
            read_text_file: {
              verify: [
                {
                  tool: "read_text_file",
                  args: { path: "$args.path" },
                  expect: { "structured.content": "$result.structured.content" },
                },
              ],
            },
          },
        },
      },
    }),
  );
  const policyFile = join(dir, "bench-mcp.yaml");
  writeFileSync(
    policyFile,
    readFileSync(shippedPolicyFile("dev"), "utf8")
      .replace("environment: dev", "environment: bench-mcp")
      .replace(
        /^tools:\n/m,
        "tools:\n  fs.read_text_file: { op: read, objects: { count: 1 }, domains: [files] }\n",
      ),
  );
  const stack = await Stack.start({
    keyDir: join(dir, "keys"),
    logDir: join(dir, "logs"),
    policyFile,
    env: { LOG_LEVEL: "warn", TRIAS_CONFIG: config },
  });
  const direct = new Client({ name: "bench", version: "0.1.0" });
  try {
    const client = new ConsoleClient(
      stack.admin,
      Signer.load(join(dir, "keys", keyFileName("console"))),
      KeyRegistry.load(stack.registryFile),
    );
    const governed: number[] = [];
    for (let i = 0; i < calls + WARMUP_CALLS; i++) {
      const t0 = performance.now();
      const { run } = await client.submit({
        goal: "one governed MCP read",
        program: "steps",
        input: { steps: [{ tool: "fs.read_text_file", args: { path } }] },
        requestedBy: "bench",
      });
      const closed = await client.waitForClose([run], 60_000);
      if (closed.get(run)?.body.outcome !== "completed")
        throw new Error(`mcp bench run ${run} ended ${closed.get(run)?.body.outcome ?? "open"}`);
      if (i >= WARMUP_CALLS) governed.push(performance.now() - t0);
    }
    await direct.connect(
      new StdioClientTransport({
        command: process.execPath,
        args: [FS_SERVER, files],
        stderr: "ignore",
      }),
    );
    const plain: number[] = [];
    for (let i = 0; i < calls + WARMUP_CALLS; i++) {
      const t0 = performance.now();
      await direct.callTool({ name: "read_text_file", arguments: { path } });
      if (i >= WARMUP_CALLS) plain.push(performance.now() - t0);
    }
    return {
      name: "filesystem read_text_file: governed (light, verified by read-back) vs direct SDK client",
      calls,
      governedMs: dist(governed),
      directMs: dist(plain),
    };
  } finally {
    await direct.close().catch(() => undefined);
    await stack.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}
