import { mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { REPO } from "./harness.js";

/** The reference MCP servers, installed as devDependencies of this package (never downloaded at test time). */
export const FS_SERVER = join(
  REPO,
  "test",
  "node_modules",
  "@modelcontextprotocol",
  "server-filesystem",
  "dist",
  "index.js",
);
export const MEMORY_SERVER = join(
  REPO,
  "test",
  "node_modules",
  "@modelcontextprotocol",
  "server-memory",
  "dist",
  "index.js",
);
/**
 * Readiness for a stack whose agents each list MCP servers' tools at start (one server
 * process per agent and server): on a loaded 2-core machine that takes well past 30 s.
 */
export const MCP_READY_MS = 120_000;

export const BAD_SERVER = join(REPO, "test", "fixtures", "bad-mcp-server.mjs");

/**
 * A user's pack, as a user writes it, in a folder outside the repository: notes kept in a
 * JSON file beside the pack, one per effect id (so a redelivery adds nothing twice).
 */
export const NOTES_PACK = `
import { readFileSync, writeFileSync, existsSync } from "node:fs";
import { z } from "zod";
import { defineTool, defineToolPack } from "@trias/tools";

const file = new URL("./notes.json", import.meta.url);
const load = () => (existsSync(file) ? JSON.parse(readFileSync(file, "utf8")) : {});
const save = (n) => writeFileSync(file, JSON.stringify(n));

const add = defineTool({
  name: "notes.add", description: "Add a note.",
  input: z.object({ text: z.string().min(1).max(200) }).strict(),
  op: "write", domains: ["notes"], objects: { count: 1 }, idempotent: true,
  async run({ text }, { effectId }) { save({ ...load(), [effectId]: text }); return { id: effectId }; },
  compensate: (_args, result) => ({ tool: "notes.remove", args: { id: result.id } }),
  async verify({ text }, result) {
    const ok = load()[result.id] === text;
    return [{ name: "note stored", ok, detail: ok ? "stored" : "missing" }];
  },
});
const remove = defineTool({
  name: "notes.remove", description: "Remove a note.",
  input: z.object({ id: z.string() }).strict(),
  op: "write", domains: ["notes"], objects: { count: 1 }, idempotent: true,
  async run({ id }) { const n = load(); delete n[id]; save(n); return { removed: id }; },
});
const list = defineTool({
  name: "notes.list", description: "List the notes.",
  input: z.object({}).strict(),
  op: "read", domains: ["notes"], objects: { count: 0 }, idempotent: true,
  run: async () => load(),
});
const secret = defineTool({
  name: "notes.wipe", description: "Delete every note.",
  input: z.object({}).strict(),
  op: "delete", domains: ["notes"], objects: { count: 1 }, idempotent: true,
  async run() { save({}); return { wiped: true }; },
});
export default defineToolPack({ name: "notes", tools: [add, remove, list, secret] });
`;

/** A folder outside the repository where `@trias/tools` and `zod` are installed (linked). */
export function userProject(): string {
  const dir = mkdtempSync(join(tmpdir(), "trias-user-"));
  mkdirSync(join(dir, "node_modules", "@trias"), { recursive: true });
  symlinkSync(join(REPO, "shared", "tools"), join(dir, "node_modules", "@trias", "tools"));
  symlinkSync(
    join(REPO, "shared", "tools", "node_modules", "zod"),
    join(dir, "node_modules", "zod"),
  );
  return dir;
}

export function writeConfig(dir: string, config: unknown): string {
  const file = join(dir, "trias.config.yaml");
  writeFileSync(file, stringify(config));
  return file;
}
