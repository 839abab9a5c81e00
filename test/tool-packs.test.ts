import { spawnSync } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { loadPolicy, shippedPolicyFile } from "@trias/policy";
import { loadAgentCatalogue } from "@trias/tools";
import { REPO, policyVariant, startHarness, uniqueRun, type Harness } from "./helpers/harness.js";
import {
  BAD_SERVER,
  FS_SERVER,
  MEMORY_SERVER,
  NOTES_PACK,
  userProject,
  writeConfig,
} from "./helpers/tool-project.js";
import { MCP_READY_MS } from "./helpers/tool-project.js";

const CLI = join(REPO, "agents", "console", "dist", "cli.js");

const of = <K extends string>(ms: { message: { kind: string } }[], k: K) =>
  ms.filter((o) => o.message.kind === k).map((o) => o.message) as MessageOf<never>[];

/**
 * A project outside the repository: a user's pack (a file) and three MCP servers from npm
 * (filesystem, memory) or the fixtures (one that misbehaves), named in its trias.config.yaml,
 * with a policy that rates their tools. Every agent loads the configuration at start.
 */
/** How long a governed run may take to close here, at most. */
const RUN_CLOSE_MS = 100_000;

describe("governed tool packs and MCP servers", { timeout: RUN_CLOSE_MS + 20_000 }, () => {
  let h: Harness;
  let dir: string;
  let files: string;
  let config: string;
  let policyFile: string;
  beforeAll(async () => {
    dir = userProject();
    files = join(dir, "files");
    writeFileSync(join(dir, "notes-pack.mjs"), NOTES_PACK);
    const { mkdirSync } = await import("node:fs");
    mkdirSync(files);
    config = writeConfig(dir, {
      version: 1,
      packs: ["trias:ledger", "trias:test", "./notes-pack.mjs"],
      mcp: {
        fs: {
          command: process.execPath,
          args: [FS_SERVER, files],
          include: ["read_text_file", "write_file"],
          timeoutMs: 10_000,
          tools: {
            write_file: {
              before: { tool: "read_text_file", args: { path: "$args.path" } },
              compensate: {
                tool: "write_file",
                args: { path: "$args.path", content: "$before.structured.content" },
              },
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
        memory: {
          command: process.execPath,
          args: [MEMORY_SERVER],
          env: { MEMORY_FILE_PATH: join(dir, "memory.jsonl") },
          include: ["create_entities", "delete_entities", "open_nodes"],
          tools: {
            create_entities: {
              compensate: {
                tool: "delete_entities",
                args: { entityNames: ["$args.entities.0.name"] },
              },
              verify: [
                {
                  tool: "open_nodes",
                  args: { names: ["$args.entities.0.name"] },
                  expect: { "structured.entities.0.name": "$args.entities.0.name" },
                },
              ],
            },
          },
        },
        bad: { command: process.execPath, args: [BAD_SERVER], timeoutMs: 5_000 },
      },
    });
    policyFile = policyVariant("dev", "tools", (doc) => {
      const tools = doc["tools"] as Record<string, unknown>;
      const entry = (op: string, domain: string) => ({
        op,
        objects: { count: 1 },
        domains: [domain],
      });
      tools["notes.add"] = entry("write", "notes");
      tools["notes.remove"] = entry("write", "notes");
      tools["notes.list"] = { op: "read", objects: { count: 0 }, domains: ["notes"] };
      tools["fs.read_text_file"] = entry("read", "files");
      tools["fs.write_file"] = entry("write", "files");
      tools["memory.create_entities"] = entry("write", "memory");
      tools["memory.delete_entities"] = entry("delete", "memory");
      tools["memory.open_nodes"] = entry("read", "memory");
      tools["bad.ok"] = entry("read", "bad");
      tools["bad.crash"] = entry("read", "bad");
      tools["bad.garbage"] = entry("read", "bad");
      // Writes to notes and files are reviewed (the standard tier's rules reviewer).
      (doc["rules"] as unknown[]).push({
        id: "review-user-writes",
        when: 'tool in ["notes.add", "fs.write_file", "memory.create_entities"]',
        tier: "standard",
      });
    });
    h = await startHarness({
      policyFile,
      env: { TRIAS_CONFIG: config },
      readyTimeoutMs: MCP_READY_MS,
    });
  }, MCP_READY_MS + 60_000);
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const submit = async (steps: { tool: string; args: Record<string, unknown> }[]) => {
    const { run } = await h.client.submit(
      { goal: "governed tools", program: "steps", input: { steps } as never, requestedBy: "test" },
      uniqueRun("tools"),
    );
    // Generous: on a loaded 2-core machine an MCP call's retries add up (a stuck run still fails).
    const closed = await h.client.waitForClose([run], RUN_CLOSE_MS);
    return { run, closed: closed.get(run), trace: await h.trace(run) };
  };

  it("a user's pack from outside the repository is governed: tiers, review, execution, verification, rollback", async () => {
    const { closed, trace } = await submit([
      { tool: "notes.add", args: { text: "buy milk" } },
      { tool: "notes.list", args: {} },
      { tool: "flaky.write", args: { key: "notes-fail", passFromAttempt: 99 } },
    ]);
    expect(closed?.body.outcome).toBe("rolled_back");
    const tiers = (of(trace, "tier_assigned") as MessageOf<"tier_assigned">[])
      .filter((t) => t.attempt === 0)
      .map((t) => `${t.step}:${t.body.tier}`);
    expect(tiers.slice(0, 2)).toEqual(["0:standard", "1:light"]);
    const verdicts = (of(trace, "verdict") as MessageOf<"verdict">[]).filter((v) => v.step === 0);
    expect(verdicts.some((v) => v.body.decision === "approve")).toBe(true);
    const verified = of(trace, "step_verified") as MessageOf<"step_verified">[];
    const first = verified.find((v) => v.step === 0 && v.body.compensationOf === null);
    expect(first?.body.verdict).toBe("passed");
    expect(first?.body.checks.find((c) => c.name === "note stored")?.ok).toBe(true);
    const comps = (of(trace, "step_executed") as MessageOf<"step_executed">[]).filter(
      (e) => e.body.compensationOf !== null && e.step === 0,
    );
    expect(comps.map((c) => `${c.body.tool}:${c.body.outcome}`)).toEqual(["notes.remove:ok"]);
    expect(JSON.parse(readFileSync(join(dir, "notes.json"), "utf8"))).toEqual({});
  });

  it("trias policy scaffold prints an entry for each loaded tool the policy does not rate", () => {
    const r = spawnSync(process.execPath, [CLI, "policy", "scaffold", "--policy", policyFile], {
      env: { ...process.env, TRIAS_CONFIG: config },
      encoding: "utf8",
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("notes.wipe:");
    expect(r.stdout).toContain("op: delete");
    expect(r.stdout).not.toContain("notes.add:");
  });

  it("a loaded tool the policy does not rate is denied, with how to add it", async () => {
    const { closed, trace } = await submit([{ tool: "notes.wipe", args: {} }]);
    expect(closed?.body.outcome).not.toBe("completed");
    const assigned = of(trace, "tier_assigned") as MessageOf<"tier_assigned">[];
    expect(assigned[0]?.body.denied).toMatch(/trias policy scaffold/);
    expect(of(trace, "step_executed")).toHaveLength(0);
  });

  it("filesystem server: an edit is reviewed, executed, verified by reading the file back, and rolled back when a later step fails", async () => {
    const path = join(files, "plan.txt");
    writeFileSync(path, "version 1\n");
    const { closed, trace } = await submit([
      { tool: "fs.write_file", args: { path, content: "version 2\n" } },
      { tool: "fs.read_text_file", args: { path } },
      { tool: "flaky.write", args: { key: "fs-fail", passFromAttempt: 99 } },
    ]);
    expect(closed?.body.outcome).toBe("rolled_back");
    const write = (of(trace, "tier_assigned") as MessageOf<"tier_assigned">[]).find(
      (t) => t.step === 0,
    );
    expect(write?.body.tier).toBe("standard");
    expect(
      (of(trace, "verdict") as MessageOf<"verdict">[]).some(
        (v) => v.step === 0 && v.body.decision === "approve",
      ),
    ).toBe(true);
    const executed = of(trace, "step_executed") as MessageOf<"step_executed">[];
    const read = executed.find((e) => e.step === 1 && e.body.compensationOf === null);
    expect((read?.body.result as { structured?: { content?: string } }).structured?.content).toBe(
      "version 2\n",
    );
    const verified = (of(trace, "step_verified") as MessageOf<"step_verified">[]).find(
      (v) => v.step === 0 && v.body.compensationOf === null,
    );
    expect(verified?.body.verdict).toBe("passed");
    expect(
      verified?.body.checks.find((c) => c.name === "read_text_file structured.content"),
    ).toMatchObject({ ok: true });
    const undo = executed.find((e) => e.step === 0 && e.body.compensationOf !== null);
    expect(undo?.body).toMatchObject({
      tool: "fs.write_file",
      args: { path, content: "version 1\n" },
      outcome: "ok",
    });
    expect(readFileSync(path, "utf8")).toBe("version 1\n");
  });

  it("memory server: an entity is created, verified by opening it, and deleted again on rollback", async () => {
    const name = uniqueRun("entity");
    const { closed, trace } = await submit([
      {
        tool: "memory.create_entities",
        args: { entities: [{ name, entityType: "project", observations: ["governed"] }] },
      },
      { tool: "flaky.write", args: { key: "mem-fail", passFromAttempt: 99 } },
    ]);
    expect(closed?.body.outcome).toBe("rolled_back");
    const verified = (of(trace, "step_verified") as MessageOf<"step_verified">[]).find(
      (v) => v.step === 0 && v.body.compensationOf === null,
    );
    expect(verified?.body.verdict).toBe("passed");
    const undo = (of(trace, "step_executed") as MessageOf<"step_executed">[]).find(
      (e) => e.step === 0 && e.body.compensationOf !== null,
    );
    expect(undo?.body).toMatchObject({
      tool: "memory.delete_entities",
      args: { entityNames: [name] },
      outcome: "ok",
    });
    expect(readFileSync(join(dir, "memory.jsonl"), "utf8")).not.toContain(name);
  });

  it.each([
    ["dies mid-call", "bad.crash", /MCP bad.crash failed/],
    ["answers garbage", "bad.garbage", /MCP bad.garbage failed/],
  ])(
    "an MCP server that %s fails the step with a clear error, and the run closes",
    async (_n, tool, why) => {
      const { closed, trace } = await submit([{ tool, args: {} }]);
      expect(closed).toBeDefined();
      expect(closed?.body.outcome).not.toBe("completed");
      const executed = of(trace, "step_executed") as MessageOf<"step_executed">[];
      expect(executed.length).toBeGreaterThan(0);
      for (const e of executed) {
        expect(e.body.outcome).toBe("error");
        expect(e.body.error).toMatch(why);
      }
      // The connection is reopened after the crash: the same server answers the next call.
      const after = await submit([{ tool: "bad.ok", args: {} }]);
      expect(after.closed?.body.outcome).toBe("completed");
    },
  );
});

describe("bad configuration", () => {
  it.each([
    ["a missing pack", ["./nowhere.mjs"], /packs\.0: pack file .*nowhere\.mjs does not exist/],
    [
      "a pack that throws on load",
      ["./throws.mjs"],
      /packs\.0: pack \.\/throws\.mjs failed while loading: boom at load/,
    ],
    [
      "a module that is not a pack",
      ["./plain.mjs"],
      /packs\.0: pack \.\/plain\.mjs does not export a tool pack/,
    ],
    ["an unknown shipped pack", ["trias:nope"], /packs\.0: no shipped pack "trias:nope"/],
  ])("%s is refused at start with the configuration's line", async (_n, packs, message) => {
    const dir = userProject();
    writeFileSync(join(dir, "throws.mjs"), 'throw new Error("boom at load");\n');
    writeFileSync(join(dir, "plain.mjs"), "export default { hello: 1 };\n");
    const config = writeConfig(dir, { version: 1, packs });
    await expect(loadAgentCatalogue({ host: null, env: { TRIAS_CONFIG: config } })).rejects.toThrow(
      new RegExp(`trias.config.yaml:3:\\d+: ${message.source}`),
    );
    rmSync(dir, { recursive: true, force: true });
  });

  it("the start-up check refuses a policy naming a tool no pack provides, on the entry's line", () => {
    const dir = userProject();
    const config = writeConfig(dir, { version: 1, packs: ["trias:ledger"] });
    // The dev policy names the test tools (noop.*, flaky.*) that this configuration leaves out.
    const r = spawnSync(process.execPath, [CLI, "policy", "scaffold"], {
      env: { ...process.env, TRIAS_CONFIG: config },
      encoding: "utf8",
    });
    expect(r.status).toBe(0);
    expect(r.stdout).toContain("every loaded tool already has a policy entry");
    return loadAgentCatalogue({
      host: null,
      env: { TRIAS_CONFIG: config },
      policy: loadPolicy(shippedPolicyFile("dev")),
    }).then(
      () => expect.unreachable(),
      (e: Error) => {
        expect(e.message).toMatch(
          /dev\.yaml:\d+:\d+: tools\.noop\.echo: the policy names tool "noop\.echo" but no loaded pack provides it/,
        );
        rmSync(dir, { recursive: true, force: true });
      },
    );
  });

  it("an MCP server that cannot start is refused at start, naming the server", async () => {
    const dir = userProject();
    const config = writeConfig(dir, {
      version: 1,
      mcp: { gone: { command: join(dir, "no-such-server"), timeoutMs: 5_000 } },
    });
    await expect(loadAgentCatalogue({ host: null, env: { TRIAS_CONFIG: config } })).rejects.toThrow(
      /mcp\.gone: MCP server gone .* could not be reached/,
    );
    rmSync(dir, { recursive: true, force: true });
  });
});
