import { readFileSync } from "node:fs";
import { parse } from "yaml";
import { z } from "zod";
import { HumanQuorum, Tier, ValidationError } from "@trias/protocol";
import { decideTier } from "./decide.js";
import type { LoadedPolicy } from "./load.js";

/** One expected decision, as `trias policy test` reads it from a cases file. */
export const PolicyCase = z
  .object({
    name: z.string().min(1),
    step: z
      .object({
        tool: z.string().min(1),
        args: z.record(z.string(), z.unknown()).default({}),
      })
      .strict(),
    expect: z
      .object({
        tier: Tier.optional(),
        /** true: refused; false: not refused; a string: refused with a reason containing it. */
        deny: z.union([z.boolean(), z.string().min(1)]).optional(),
        reviewers: z.number().int().min(0).optional(),
        human: z.boolean().optional(),
        humans: z.array(HumanQuorum).optional(),
        /** Rule ids that must be among the matched ones. */
        rules: z.array(z.string()).optional(),
      })
      .strict(),
  })
  .strict();
export type PolicyCase = z.infer<typeof PolicyCase>;

export const PolicyCases = z.object({ cases: z.array(PolicyCase).min(1) }).strict();

export interface CaseResult {
  name: string;
  ok: boolean;
  /** What differs from the expectation, one entry per field. */
  failures: string[];
}

/** Read a cases file; every problem names the file and the field. */
export function loadPolicyCases(file: string): PolicyCase[] {
  let raw: unknown;
  try {
    raw = parse(readFileSync(file, "utf8"));
  } catch (e) {
    throw new ValidationError("config_invalid", `${file}: ${(e as Error).message}`, { cause: e });
  }
  const r = PolicyCases.safeParse(raw);
  if (!r.success)
    throw new ValidationError("config_invalid", `${file}: ${z.prettifyError(r.error)}`, {
      cause: r.error,
    });
  return r.data.cases;
}

/** Decide each case's step under the policy and compare with what the case expects. */
export function runPolicyCases(policy: LoadedPolicy, cases: readonly PolicyCase[]): CaseResult[] {
  return cases.map((c) => {
    const d = decideTier(policy, {
      tool: c.step.tool,
      args: c.step.args,
      run: { id: "policy-test", step: 0, attempt: 0 },
    });
    const e = c.expect;
    const failures: string[] = [];
    const check = (field: string, want: unknown, got: unknown) => {
      if (want !== undefined && JSON.stringify(want) !== JSON.stringify(got))
        failures.push(`${field}: expected ${JSON.stringify(want)}, got ${JSON.stringify(got)}`);
    };
    check("tier", e.tier, d.tier);
    if (typeof e.deny === "string") {
      if (!d.denied?.includes(e.deny))
        failures.push(
          `deny: expected a refusal containing ${JSON.stringify(e.deny)}, got ${JSON.stringify(d.denied)}`,
        );
    } else check("deny", e.deny, d.denied !== null);
    check("reviewers", e.reviewers, d.requires.reviewers);
    check("human", e.human, d.requires.human);
    check("humans", e.humans, d.requires.humans ?? []);
    for (const id of e.rules ?? [])
      if (!d.matched.some((m) => m.id === id))
        failures.push(
          `rules: expected ${id} to match, matched ${d.matched.map((m) => m.id).join(", ") || "none"}`,
        );
    return { name: c.name, ok: failures.length === 0, failures };
  });
}
