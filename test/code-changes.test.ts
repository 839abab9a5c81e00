import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { stringify } from "yaml";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MessageOf } from "@trias/protocol";
import { shippedPolicyFile } from "@trias/policy";
import { startHarness, uniqueRun, type Harness } from "./helpers/harness.js";

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@localhost", ...args], {
    cwd,
    encoding: "utf8",
  }).trim();

/** The main working tree as a user sees it: file bytes (not .git) and `git status`. */
function snapshot(dir: string): string {
  const h = createHash("sha256");
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      if (name === ".git") continue;
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else h.update(p).update(readFileSync(p));
    }
  };
  walk(dir);
  h.update(git(dir, "status", "--porcelain"));
  return h.digest("hex");
}

const patchFor = (from: string, to: string) =>
  [
    "diff --git a/app.txt b/app.txt",
    "--- a/app.txt",
    "+++ b/app.txt",
    "@@ -1 +1 @@",
    `-${from}`,
    `+${to}`,
    "",
  ].join("\n");

/**
 * The code pack through a real stack: executor and verifier run git on a real repository,
 * the checks are real processes, the commit is reviewed by the reviewers the shipped code
 * policy asks for, and roll-backs are compensations the verifier orders and the executor runs.
 */
describe("transactional code changes, governed", () => {
  let h: Harness;
  let dir: string;
  let repo: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "trias-code-e2e-"));
    repo = join(dir, "repo");
    execFileSync("git", ["init", "-q", "-b", "main", repo]);
    writeFileSync(join(repo, "app.txt"), "v1\n");
    git(repo, "add", "app.txt");
    git(repo, "commit", "-q", "-m", "init");
    const config = join(dir, "trias.config.yaml");
    writeFileSync(config, stringify({ version: 1, packs: ["trias:code"] }));
    h = await startHarness({
      environment: "code",
      policyFile: shippedPolicyFile("code"),
      env: {
        TRIAS_CONFIG: config,
        TRIAS_CODE_REPO: repo,
        TRIAS_CODE_WORKTREES: join(dir, "worktrees"),
        TRIAS_CODE_CHECKS: JSON.stringify([
          {
            name: "lint",
            command: [
              process.execPath,
              "-e",
              "process.exit(require('fs').readFileSync('app.txt','utf8').includes('bad') ? 1 : 0)",
            ],
          },
        ]),
      },
    });
  });
  afterAll(async () => {
    await h?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const submit = async (steps: { tool: string; args: Record<string, unknown> }[]) => {
    const { run } = await h.client.submit(
      { goal: "code change", program: "steps", input: { steps } as never, requestedBy: "test" },
      uniqueRun("code"),
    );
    const closed = await h.client.waitForClose([run], 45_000);
    return { run, closed: closed.get(run), trace: (await h.trace(run)).map((o) => o.message) };
  };
  // Each change is made against what the target holds now: the tests run in any order.
  const change = (name: string, to: string) => [
    {
      tool: "code.stage",
      args: {
        change: name,
        patch: patchFor(readFileSync(join(repo, "app.txt"), "utf8").trim(), to),
        message: name,
      },
    },
    { tool: "code.check", args: { change: name } },
    { tool: "code.commit", args: { change: name } },
  ];
  const leftovers = () => ({
    branches: git(repo, "branch", "--list", "trias/*"),
    worktrees: git(repo, "worktree", "list").split("\n").length,
  });

  it("code e2e - a change that passes its checks is committed after review", async () => {
    const { closed, trace } = await submit(change("pass", "v2"));
    expect(closed?.body.outcome).toBe("completed");
    const tiers = trace
      .filter((m): m is MessageOf<"tier_assigned"> => m.kind === "tier_assigned")
      .map((m) => `${m.step}:${m.body.tier}`);
    expect(tiers).toEqual(["0:standard", "1:light", "2:full"]);
    expect(
      trace.some((m) => m.kind === "verdict" && m.step === 2 && m.body.decision === "approve"),
    ).toBe(true);
    expect(readFileSync(join(repo, "app.txt"), "utf8")).toBe("v2\n");
    expect(git(repo, "log", "-1", "--format=%s", "main")).toBe("pass");
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect(leftovers()).toEqual({ branches: "", worktrees: 1 });
  });

  it("code e2e - a patch rejected in review is never staged", async () => {
    const before = snapshot(repo);
    const head = git(repo, "rev-parse", "main");
    const ci = patchFor("a", "b").replace(/app\.txt/g, ".github/workflows/ci.yml");
    const { closed, trace } = await submit([
      { tool: "code.stage", args: { change: "ci", patch: ci, message: "ci" } },
      { tool: "code.check", args: { change: "ci" } },
      { tool: "code.commit", args: { change: "ci" } },
    ]);
    expect(closed?.body.outcome).toBe("rejected");
    expect(closed?.body.reason).toMatch(/no-ci-changes/);
    expect(trace.filter((m) => m.kind === "step_executed")).toHaveLength(0);
    expect(git(repo, "rev-parse", "main")).toBe(head);
    expect(snapshot(repo)).toBe(before);
    expect(leftovers()).toEqual({ branches: "", worktrees: 1 });
  });

  it("code e2e - a failing check rolls the change back: worktree and branch removed, the target untouched", async () => {
    const before = snapshot(repo);
    const head = git(repo, "rev-parse", "main");
    const { closed, trace } = await submit(change("broken", "bad"));
    expect(closed?.body.outcome).toBe("rolled_back");
    const executed = trace.filter(
      (m): m is MessageOf<"step_executed"> => m.kind === "step_executed",
    );
    expect(executed.find((m) => m.step === 1)?.body.error).toMatch(/fails lint/);
    expect(executed.some((m) => m.step === 2)).toBe(false);
    expect(executed.filter((m) => m.body.compensationOf !== null).map((m) => m.body.tool)).toEqual([
      "code.discard",
    ]);
    expect(git(repo, "rev-parse", "main")).toBe(head);
    expect(snapshot(repo)).toBe(before);
    expect(leftovers()).toEqual({ branches: "", worktrees: 1 });
  });

  it("code e2e - a failure after the commit is compensated by a revert commit on the target", async () => {
    const was = readFileSync(join(repo, "app.txt"), "utf8");
    const head = git(repo, "rev-parse", "main");
    // The step after the commit checks a change that was never staged: the tool refuses.
    const { closed, trace } = await submit([
      ...change("landed", "v-landed"),
      { tool: "code.check", args: { change: "never-staged" } },
    ]);
    expect(closed?.body.outcome).toBe("rolled_back");
    const compensations = trace
      .filter(
        (m): m is MessageOf<"step_executed"> =>
          m.kind === "step_executed" && m.body.compensationOf !== null,
      )
      .map((m) => `${m.step}:${m.body.tool}:${m.body.outcome}`);
    expect(compensations).toEqual(["2:code.revert:ok", "0:code.discard:ok"]);
    // History keeps the commit and its revert; the files are as before the change.
    expect(git(repo, "log", "-2", "--format=%s", "main").split("\n")[1]).toBe("landed");
    expect(git(repo, "rev-list", "--count", `${head}..main`)).toBe("2");
    expect(readFileSync(join(repo, "app.txt"), "utf8")).toBe(was);
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect(leftovers()).toEqual({ branches: "", worktrees: 1 });
  });
});
