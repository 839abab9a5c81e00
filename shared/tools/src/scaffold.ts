import { stringify } from "yaml";
import type { Catalogue } from "./catalogue.js";

/**
 * Policy `tools:` entries for the loaded tools the policy does not rate yet, from each
 * tool's declared facts (an MCP tool's from its annotations): a starting point to review.
 */
export function scaffoldEntries(catalogue: Catalogue, rated: ReadonlySet<string>): string {
  const tools: Record<string, unknown> = {};
  for (const t of catalogue.tools()) {
    if (rated.has(t.name)) continue;
    tools[t.name] = { op: t.op, objects: t.objects, domains: [...t.domains] };
  }
  if (Object.keys(tools).length === 0) return "# every loaded tool already has a policy entry\n";
  return stringify({ tools });
}
