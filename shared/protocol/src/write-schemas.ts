import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { messageJsonSchemas } from "./json-schema.js";

// Writes shared/protocol/schemas/*.json; a test fails when the committed copies drift.
const dir = join(dirname(fileURLToPath(import.meta.url)), "..", "schemas");
mkdirSync(dir, { recursive: true });
for (const [name, schema] of Object.entries(messageJsonSchemas())) {
  writeFileSync(join(dir, name), JSON.stringify(schema, null, 2) + "\n");
}
console.log(`wrote ${Object.keys(messageJsonSchemas()).length} schemas to ${dir}`);
