// Where the shipped policies live, with no other import: the agent host resolves an
// environment's policy file from this alone (`@trias/policy/paths`), without loading the
// YAML and CEL stack that only the agents that enforce a policy need.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The environments shipped in deploy/policies. Found from this module's own location (src/
 * or dist/ sit at the same depth), so it holds in a checkout and in the container image,
 * whatever the working directory.
 */
export const SHIPPED_POLICY_DIR = join(
  dirname(fileURLToPath(import.meta.url)),
  "..",
  "..",
  "..",
  "deploy",
  "policies",
);

/** The shipped policy file of one environment. */
export function shippedPolicyFile(environment: string): string {
  return join(SHIPPED_POLICY_DIR, `${environment}.yaml`);
}
