import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { KINDS, messageJsonSchemas } from "./index.js";

const dir = join(import.meta.dirname, "..", "schemas");

describe("protocol JSON Schema", () => {
  it("protocol - committed JSON Schemas match the zod schemas (regenerate: pnpm --filter @trias/protocol schemas)", () => {
    const generated = messageJsonSchemas();
    const committed = readdirSync(dir)
      .filter((f) => f.endsWith(".schema.json"))
      .sort();
    expect(committed).toEqual(Object.keys(generated).sort());
    for (const [name, schema] of Object.entries(generated)) {
      expect(JSON.parse(readFileSync(join(dir, name), "utf8")), name).toEqual(
        JSON.parse(JSON.stringify(schema)),
      );
    }
  });

  it("protocol - there is one schema per message kind plus the union", () => {
    expect(Object.keys(messageJsonSchemas())).toHaveLength(KINDS.length + 1);
  });
});
