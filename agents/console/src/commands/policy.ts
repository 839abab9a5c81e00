import type { Command } from "commander";
import {
  diffPolicies,
  explainStep,
  loadPolicy,
  renderPolicyDiff,
  summarizePolicy,
} from "@trias/policy";
import { existingFile, jsonArg, out } from "../cli-kit.js";

export function registerPolicy(program: Command): void {
  const policy = program.command("policy").description("check, explain and compare policies");
  policy
    .command("check")
    .description("validate a policy: its digest and summary, or every error with its line")
    .argument("<file>", "policy YAML", existingFile)
    .action((file: string) => out(summarizePolicy(loadPolicy(file))));
  policy
    .command("explain")
    .description("score terms, matched rules, tier and why, for one step")
    .argument("<file>", "policy YAML", existingFile)
    .requiredOption(
      "--step <json>",
      "the step: tool and args",
      jsonArg(
        "--step",
        `--step '{"tool":"ledger.transfer","args":{"from":"a","to":"b","amount":5}}'`,
      ),
    )
    .action((file: string, o: { step: unknown }) =>
      out(explainStep(loadPolicy(file), o.step as Parameters<typeof explainStep>[1])),
    );
  policy
    .command("diff")
    .description("what changes between two policies")
    .argument("<a>", "policy YAML (before)", existingFile)
    .argument("<b>", "policy YAML (after)", existingFile)
    .action((a: string, b: string) => {
      const pa = loadPolicy(a);
      const pb = loadPolicy(b);
      out(renderPolicyDiff(pa, pb, diffPolicies(pa, pb)));
    });
}
