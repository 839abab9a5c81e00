import { isAbsolute, join, resolve } from "node:path";
import { parseArgs } from "node:util";
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
 * `trias policy scaffold [--policy <file>] [--full]`: policy entries for the loaded tools
 * (packs and MCP servers of the project configuration) that the policy does not rate yet;
 * with --full, the whole policy with them added, comments kept.
 */
export async function scaffoldCommand(args: string[], out: (s: string) => void): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { policy: { type: "string" }, full: { type: "boolean" } },
  });
  const file = values.policy ?? policyFileFromEnv();
  const policy = loadPolicy(file);
  const { catalogue, config } = await loadCatalogue({ host: null });
  try {
    const rated = new Set(Object.keys(policy.doc.tools));
    const entries = scaffoldEntries(catalogue, rated);
    if (!values.full) {
      out(
        `# tools loaded from ${config.file ?? "the default configuration"} that ${file} does not rate yet;\n# review op, objects and domains, then add these under \`tools:\` in the policy\n${entries}`,
      );
      return 0;
    }
    const doc = parseDocument(readFileSync(file, "utf8"));
    for (const t of catalogue.tools()) {
      if (rated.has(t.name)) continue;
      const node = doc.createNode({ op: t.op, objects: t.objects, domains: [...t.domains] });
      node.flow = true;
      doc.setIn(["tools", t.name], node);
    }
    out(doc.toString());
    return 0;
  } finally {
    await catalogue.close();
  }
}
