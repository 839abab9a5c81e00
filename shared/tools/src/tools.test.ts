import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { parsePolicy, policyCatalogueProblems, shippedPolicyFile, loadPolicy } from "@trias/policy";
import {
  Catalogue,
  ConfigError,
  defineTool,
  defineToolPack,
  fillTemplate,
  ledgerPack,
  operationFromAnnotations,
  parseConfig,
  scaffoldEntries,
  testPack,
} from "./index.js";

describe("tool packs", () => {
  it.each([
    ["no annotations: the strictest", undefined, "irreversible"],
    ["read-only", { readOnlyHint: true }, "read"],
    ["read-only wins over destructive", { readOnlyHint: true, destructiveHint: true }, "read"],
    ["additive (not destructive)", { readOnlyHint: false, destructiveHint: false }, "write"],
    ["destructive and idempotent", { destructiveHint: true, idempotentHint: true }, "delete"],
    [
      "destructive, not idempotent",
      { destructiveHint: true, idempotentHint: false },
      "irreversible",
    ],
    ["annotations present, hints absent: MCP defaults", {}, "irreversible"],
  ] as const)("annotations - %s", (_n, annotations, op) => {
    expect(operationFromAnnotations(annotations)).toBe(op);
  });

  it.each([
    ["a path", "$args.path", { args: { path: "/a" } }, "/a"],
    ["a literal", "plain", {}, "plain"],
    ["an escaped dollar", "$$args", { args: 1 }, "$args"],
    [
      "nested",
      { p: "$args.p", c: ["$before.structured.content"] },
      { args: { p: "x" }, before: { structured: { content: "old" } } },
      { p: "x", c: ["old"] },
    ],
    ["a missing value", { c: "$before.text" }, { before: null }, undefined],
  ] as const)("templates - %s", (_n, t, scope, want) => {
    expect(fillTemplate(t as never, scope as never)).toEqual(want);
  });

  it("a tool's arguments are parsed before run, and its result checked against its output", async () => {
    const t = defineTool({
      name: "notes.len",
      description: "length",
      input: z.object({ s: z.string() }).strict(),
      output: z.object({ n: z.number().max(3) }),
      op: "read",
      domains: ["notes"],
      objects: { count: 0 },
      idempotent: true,
      run: ({ s }) => Promise.resolve({ n: s.length }),
    });
    const ctx = { effectId: "r:0:0", attempt: 0, resources: undefined };
    await expect(t.run({ s: "abc" }, ctx)).resolves.toEqual({ n: 3 });
    await expect(t.run({ s: 3 }, ctx)).rejects.toThrow(/arguments for notes.len are invalid/);
    await expect(t.run({ s: "abcd" }, ctx)).rejects.toThrow(/does not match its output schema/);
    expect(t.compensate({ s: "a" }, { n: 1 })).toBeNull();
    expect((await t.verify({ s: "a" }, { n: 1 }, ctx))[0]?.name).toBe("postconditions declared");
  });

  it("a bad tool or pack name, or two packs with the same tool, is refused", async () => {
    const base = {
      description: "d",
      input: z.object({}),
      op: "read" as const,
      domains: ["x"],
      objects: { count: 0 },
      idempotent: true,
      run: () => Promise.resolve(null),
    };
    expect(() => defineTool({ ...base, name: "NoDot" })).toThrow(/<pack>.<verb>/);
    expect(() => defineToolPack({ name: "Bad Name", tools: [] })).toThrow(/pack name/);
    const a = defineToolPack({ name: "a", tools: [defineTool({ ...base, name: "x.y" })] });
    const b = defineToolPack({ name: "b", tools: [defineTool({ ...base, name: "x.y" })] });
    await expect(Catalogue.open([a, b], null)).rejects.toThrow(/both pack a and pack b/);
  });

  it("a pack not opened in this process cannot run its tools (only the executor runs them)", async () => {
    const c = await Catalogue.open([ledgerPack], null);
    await expect(
      c.require("ledger.balance").run({ account: "alice" }, { effectId: "r:0:0", attempt: 0 }),
    ).rejects.toThrow(/not open in this process/);
    expect(() => c.require("nope.x")).toThrow(/no tool named "nope.x"/);
  });

  it("the shipped policies rate exactly the shipped packs' tools", async () => {
    const c = await Catalogue.open([ledgerPack, testPack], null);
    for (const env of ["dev", "staging", "prod"]) {
      expect(policyCatalogueProblems(loadPolicy(shippedPolicyFile(env)), c.names(), "cfg")).toEqual(
        [],
      );
    }
  });

  it("a policy naming a tool no pack provides is reported on the entry's line", async () => {
    const text = readShipped().replace(
      "  noop.echo: { op: read",
      "  noop.ecko: { op: read, objects: { count: 0 }, domains: [test] }\n  noop.echo: { op: read",
    );
    const policy = parsePolicy(text, "p.yaml");
    const c = await Catalogue.open([ledgerPack, testPack], null);
    const problems = policyCatalogueProblems(policy, c.names(), "trias.config.yaml");
    const line = text.split("\n").findIndex((l) => l.startsWith("  noop.ecko")) + 1;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ file: "p.yaml", line, path: "tools.noop.ecko" });
    expect(problems[0]?.message).toMatch(/no loaded pack provides it/);
  });

  it("scaffold prints entries only for tools the policy does not rate", async () => {
    const c = await Catalogue.open([ledgerPack, testPack], null);
    const out = scaffoldEntries(c, new Set(c.names().filter((n) => n !== "ledger.transfer")));
    expect(out).toContain("ledger.transfer:");
    expect(out).toContain("op: write");
    expect(out).not.toContain("ledger.balance");
  });
});

describe("project configuration", () => {
  it.each([
    ["an unknown key", "version: 1\npackz: []\n", 2, /packz/],
    [
      "an MCP server with neither command nor url",
      "version: 1\nmcp:\n  fs:\n    args: []\n",
      4,
      /exactly one of/,
    ],
    [
      "a bad timeout",
      "version: 1\nmcp:\n  fs:\n    command: x\n    timeoutMs: -1\n",
      5,
      /timeoutMs/,
    ],
    ["broken YAML", "version: 1\npacks: [a\n", 3, /YAML/],
  ])("%s is refused with its line", (_n, text, line, message) => {
    let err: unknown;
    try {
      parseConfig(text, "trias.config.yaml");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ConfigError);
    const p = (err as ConfigError).problems[0];
    expect(p?.line).toBe(line);
    expect(`${p?.path} ${p?.message}`).toMatch(message);
  });

  it("defaults to the shipped packs", () => {
    expect(parseConfig("version: 1\n", "c.yaml").config.packs).toEqual([
      "trias:ledger",
      "trias:test",
      "trias:kyc",
    ]);
  });
});

function readShipped(): string {
  return readFileSync(shippedPolicyFile("dev"), "utf8");
}
