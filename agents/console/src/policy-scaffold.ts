import { isAbsolute, join, resolve } from "node:path";
import { parseDocument } from "yaml";
import { readFileSync } from "node:fs";
import { loadPolicy, SHIPPED_POLICY_DIR } from "@trias/policy";
import { loadCatalogue, scaffoldEntries } from "@trias/tools";

/** The policy file the agents would load from this environment (TRIAS_POLICY, else TRIAS_ENV's). */
export function policyFileFromEnv(env: Record<string, string | undefined> = process.env): string {
  const given = env["TRIAS_POLICY"];
  if (given) return isAbsolute(given) ? given : resolve(given);
  return join(env["TRIAS_POLICY_DIR"] ?? SHIPPED_POLICY_DIR, `${env["TRIAS_ENV"] ?? "dev"}.yaml`);
}

/**
 * `trias policy scaffold`: policy entries for the loaded tools (packs and MCP servers of the
 * project configuration) that the policy does not rate yet; with `full`, the whole policy
 * with them added, comments kept.
 */
export async function scaffold(file: string, full: boolean): Promise<string> {
  const policy = loadPolicy(file);
  const { catalogue, config } = await loadCatalogue({ host: null });
  try {
    const rated = new Set(Object.keys(policy.doc.tools));
    if (!full)
      return `# tools loaded from ${config.file ?? "the default configuration"} that ${file} does not rate yet;\n# review op, objects and domains, then add these under \`tools:\` in the policy\n${scaffoldEntries(catalogue, rated)}`;
    const doc = parseDocument(readFileSync(file, "utf8"));
    for (const t of catalogue.tools()) {
      if (rated.has(t.name)) continue;
      const node = doc.createNode({ op: t.op, objects: t.objects, domains: [...t.domains] });
      node.flow = true;
      doc.setIn(["tools", t.name], node);
    }
    return doc.toString();
  } finally {
    await catalogue.close();
  }
}
