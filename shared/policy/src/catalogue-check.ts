import type { LoadedPolicy, PolicyProblem } from "./load.js";

/**
 * Pure: the problems of a policy against the tools actually loaded (packs and MCP servers).
 * A policy entry naming a tool no pack provides is an error at start, reported on the
 * entry's line: a typo there would otherwise leave the real tool unrated, hence denied, with
 * nothing saying why. A loaded tool the policy does not name is no problem here: the router
 * refuses its steps with a reason that says how to add it (decide.ts, unknownToolReason).
 */
export function policyCatalogueProblems(
  policy: LoadedPolicy,
  loaded: Iterable<string>,
  configFile: string,
): PolicyProblem[] {
  const have = new Set(loaded);
  const out: PolicyProblem[] = [];
  for (const name of Object.keys(policy.doc.tools)) {
    if (have.has(name)) continue;
    const pos = policy.toolLines?.get(name) ?? { line: 0, column: 0 };
    out.push({
      file: policy.file,
      ...pos,
      path: `tools.${name}`,
      message: `the policy names tool "${name}" but no loaded pack provides it (packs and MCP servers come from ${configFile}; loaded: ${[...have].sort().join(", ") || "none"}): remove the entry or add the pack that provides it`,
    });
  }
  return out;
}
