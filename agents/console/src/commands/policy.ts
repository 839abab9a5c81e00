import type { Command } from "commander";
import {
  loadPolicyCases,
  policyChanges,
  renderPolicyChanges,
  runPolicyCases,
  diffPolicies,
  explainStep,
  loadPolicy,
  renderPolicyDiff,
  summarizePolicy,
} from "@trias/policy";
import { EXIT, existingFile, jsonArg, out } from "../cli-kit.js";

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
    .description(
      "what changed between two policies: each added, removed or changed rule, threshold, quorum or tool entry with the tools it affects, then the sample steps whose outcome changes",
    )
    .argument("<a>", "policy YAML (before)", existingFile)
    .argument("<b>", "policy YAML (after)", existingFile)
    .action((a: string, b: string) => {
      const pa = loadPolicy(a);
      const pb = loadPolicy(b);
      for (const l of renderPolicyChanges(policyChanges(pa, pb))) out(l);
      out("");
      out(renderPolicyDiff(pa, pb, diffPolicies(pa, pb)));
    });
  policy
    .command("test")
    .description(
      "run expected decisions (tier, deny, reviewers, humans, rules) against a policy, like opa test",
    )
    .argument("<file>", "policy YAML", existingFile)
    .argument(
      "<cases>",
      "cases YAML: cases: [{name, step: {tool, args}, expect: {tier, deny, reviewers, human, humans, rules}}]",
      existingFile,
    )
    .action((file: string, casesFile: string) => {
      const results = runPolicyCases(loadPolicy(file), loadPolicyCases(casesFile));
      for (const r of results) {
        out(`${r.ok ? "PASS" : "FAIL"} ${r.name}`);
        for (const f of r.failures) out(`     ${f}`);
      }
      const failed = results.filter((r) => !r.ok).length;
      out(`${results.length - failed} passed, ${failed} failed`);
      process.exitCode = failed === 0 ? EXIT.ok : EXIT.failed;
    });
}
