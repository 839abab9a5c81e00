import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SHIPPED_POLICY_DIR } from "@trias/policy";
import { parse } from "yaml";

/** A policy document as read from YAML, before validation (the agents validate it at load). */
export interface PolicyDoc {
  environment: string;
  risk: { thresholds: { standard: number; full: number } };
  tiers: Record<string, Record<string, unknown>>;
  tools: Record<string, unknown>;
  rules: { id: string; when: string }[];
  [k: string]: unknown;
}

/** A shipped policy (deploy/policies/<name>.yaml) as a document to adapt. */
export function shippedPolicyDoc(name: string): PolicyDoc {
  return parse(readFileSync(join(SHIPPED_POLICY_DIR, `${name}.yaml`), "utf8")) as PolicyDoc;
}

/**
 * Add a shipped pack's own part of its shipped policy to `doc`: the entries of the pack's
 * tools (`<pack>.*`) and the rules that name them, not the pack policy's quorums or its
 * general rules. `trias lab` and `trias eval` run the KYC and code packs under dev this way.
 */
export function withPackEntries(doc: PolicyDoc, pack: "kyc" | "code"): PolicyDoc {
  const prefix = `${pack}.`;
  const p = shippedPolicyDoc(pack);
  for (const [tool, entry] of Object.entries(p.tools))
    if (tool.startsWith(prefix)) doc.tools[tool] = entry;
  const have = new Set(doc.rules.map((r) => r.id));
  doc.rules.push(...p.rules.filter((r) => r.when.includes(`"${prefix}`) && !have.has(r.id)));
  return doc;
}
