import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { JsonObject, JsonValue } from "@trias/protocol";
import {
  checkArguments,
  decideTier,
  loadPolicy,
  policyCatalogueProblems,
  shippedPolicyFile,
} from "@trias/policy";
import { CodeConfig, codeConfigFromEnv, codePack, type CodeConfigInput } from "./code.js";
import type { Tool, ToolContext } from "./pack.js";

const git = (cwd: string, ...args: string[]) =>
  execFileSync("git", ["-c", "user.name=T", "-c", "user.email=t@localhost", ...args], {
    cwd,
    encoding: "utf8",
  }).trim();

/** Everything a user sees of the main working tree: file bytes (not .git) and git status. */
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

const tool = (name: string): Tool => {
  const t = codePack.tools.find((x) => x.name === name);
  if (!t) throw new Error(`no ${name}`);
  return t;
};

// A check is a real process: node reading the staged file, failing when it says "bad".
const CHECK = [
  {
    name: "lint",
    command: [
      process.execPath,
      "-e",
      "process.exit(require('fs').readFileSync('app.txt','utf8').includes('bad') ? 1 : 0)",
    ],
  },
];

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

describe("code pack over a real git repository", () => {
  let dir: string;
  let repo: string;
  let ctx: (attempt?: number) => ToolContext;
  const call = async (name: string, args: JsonObject, attempt = 1) =>
    tool(name).run(args, ctx(attempt));
  const verify = async (name: string, args: JsonObject, result: JsonValue) =>
    tool(name).verify(args, result, ctx());

  const setup = (o: Partial<CodeConfigInput> = {}) => {
    const cfg = CodeConfig.parse({
      repo,
      checks: CHECK,
      worktrees: join(dir, "worktrees"),
      ...o,
    });
    ctx = (attempt = 1) => ({
      effectId: `run-1:0:${attempt}`,
      attempt,
      resources: { config: cfg },
    });
  };

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), "trias-code-"));
    repo = join(dir, "repo");
    execFileSync("git", ["init", "-q", "-b", "main", repo]);
    writeFileSync(join(repo, "app.txt"), "hello\n");
    git(repo, "add", "app.txt");
    git(repo, "commit", "-q", "-m", "init");
    setup();
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it("code - a passing change is staged and checked off the main tree, then committed", async () => {
    const before = snapshot(repo);
    const base = git(repo, "rev-parse", "main");
    const args = { change: "greet", patch: patchFor("hello", "hello world"), message: "greet" };
    const staged = (await call("code.stage", args)) as { head: string; worktree: string };
    expect(existsSync(staged.worktree)).toBe(true);
    expect(readFileSync(join(staged.worktree, "app.txt"), "utf8")).toBe("hello world\n");
    expect((await verify("code.stage", args, staged)).every((c) => c.ok)).toBe(true);
    // Redelivered, even while the first delivery runs, the same effect finds its own staging.
    const [again, twice] = await Promise.all([call("code.stage", args), call("code.stage", args)]);
    expect(again).toEqual(staged);
    expect(twice).toEqual(staged);
    expect(snapshot(repo)).toBe(before);

    const checked = await call("code.check", { change: "greet" });
    expect(checked).toMatchObject({ head: staged.head, passed: ["lint"] });
    expect((await verify("code.check", { change: "greet" }, checked)).every((c) => c.ok)).toBe(
      true,
    );
    expect(snapshot(repo)).toBe(before);
    expect(git(repo, "rev-parse", "main")).toBe(base);

    const [committed, redelivered] = await Promise.all([
      call("code.commit", { change: "greet" }),
      call("code.commit", { change: "greet" }),
    ]);
    expect(committed).toEqual({ change: "greet", target: "main", base, head: staged.head });
    expect(redelivered).toEqual(committed);
    expect(git(repo, "rev-parse", "main")).toBe(staged.head);
    expect(readFileSync(join(repo, "app.txt"), "utf8")).toBe("hello world\n");
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect((await verify("code.commit", { change: "greet" }, committed)).every((c) => c.ok)).toBe(
      true,
    );
    // The staging is cleaned up once committed.
    expect(existsSync(staged.worktree)).toBe(false);
    expect(git(repo, "branch", "--list", "trias/*")).toBe("");
  });

  it("code - a failing check commits nothing and compensation removes worktree and branch", async () => {
    const before = snapshot(repo);
    const base = git(repo, "rev-parse", "main");
    const args = { change: "oops", patch: patchFor("hello", "bad"), message: "oops" };
    const staged = (await call("code.stage", args)) as { worktree: string };
    await expect(call("code.check", { change: "oops" })).rejects.toThrow(/fails lint \(exit 1\)/);
    // Commit is refused without passing checks.
    await expect(call("code.commit", { change: "oops" })).rejects.toThrow(/checks have not passed/);
    const order = tool("code.stage").compensate(args, staged);
    expect(order).toEqual({ tool: "code.discard", args: { change: "oops" } });
    const r = await call(order!.tool, order!.args);
    expect((await verify(order!.tool, order!.args, r)).every((c) => c.ok)).toBe(true);
    expect(existsSync(staged.worktree)).toBe(false);
    expect(git(repo, "branch", "--list", "trias/*")).toBe("");
    expect(git(repo, "worktree", "list").split("\n")).toHaveLength(1);
    expect(git(repo, "rev-parse", "main")).toBe(base);
    expect(snapshot(repo)).toBe(before);
  });

  it("code - a change rejected in review is rolled back by the stage's compensation", async () => {
    const before = snapshot(repo);
    const args = { change: "rejected", patch: patchFor("hello", "hi"), message: "hi" };
    const staged = (await call("code.stage", args)) as { worktree: string };
    await call("code.check", { change: "rejected" });
    // The reviewers refused the commit step: recovery runs the stage's compensation.
    const order = tool("code.stage").compensate(args, staged)!;
    await call(order.tool, order.args);
    expect(existsSync(staged.worktree)).toBe(false);
    expect(git(repo, "branch", "--list", "trias/*")).toBe("");
    expect(git(repo, "for-each-ref", "refs/trias")).toBe("");
    expect(snapshot(repo)).toBe(before);
    // Discarding twice changes nothing more.
    await call(order.tool, order.args);
  });

  it("code - a failed check after commit is compensated by a revert commit", async () => {
    const base = git(repo, "rev-parse", "main");
    const args = { change: "late", patch: patchFor("hello", "hello again"), message: "late" };
    await call("code.stage", args);
    await call("code.check", { change: "late" });
    const committed = await call("code.commit", { change: "late" });
    // A later step found a problem; recovery compensates the commit.
    const order = tool("code.commit").compensate({ change: "late" }, committed)!;
    expect(order.tool).toBe("code.revert");
    const reverted = (await call(order.tool, order.args)) as { revert: string };
    expect(git(repo, "rev-parse", "main")).toBe(reverted.revert);
    expect(git(repo, "log", "-1", "--format=%s", "main")).toBe("Revert trias change late");
    expect(git(repo, "rev-parse", "main^{tree}")).toBe(git(repo, "rev-parse", `${base}^{tree}`));
    expect(readFileSync(join(repo, "app.txt"), "utf8")).toBe("hello\n");
    expect(git(repo, "status", "--porcelain")).toBe("");
    expect((await verify(order.tool, order.args, reverted)).every((c) => c.ok)).toBe(true);
    // Redelivered, the revert is found, not made twice.
    expect(await call(order.tool, order.args)).toEqual(reverted);
  });

  it("code - a patch that does not apply is refused and leaves nothing behind", async () => {
    const before = snapshot(repo);
    await expect(
      call("code.stage", { change: "nope", patch: patchFor("absent", "x"), message: "x" }),
    ).rejects.toThrow(/cannot be staged/);
    expect(git(repo, "branch", "--list", "trias/*")).toBe("");
    expect(existsSync(join(dir, "worktrees", "nope"))).toBe(false);
    expect(snapshot(repo)).toBe(before);
  });

  it("code - a check that runs past its timeout fails", async () => {
    setup({
      checks: [
        {
          name: "slow",
          command: [process.execPath, "-e", "setTimeout(()=>{},60000)"],
          timeoutMs: 300,
        },
      ],
    });
    await call("code.stage", { change: "slow", patch: patchFor("hello", "x"), message: "x" });
    await expect(call("code.check", { change: "slow" })).rejects.toThrow(/timed out after 300 ms/);
  });

  it("code - configuration from the environment is checked", () => {
    expect(codeConfigFromEnv({})).toBeNull();
    expect(
      codeConfigFromEnv({
        TRIAS_CODE_REPO: "/srv/repo",
        TRIAS_CODE_CHECKS: '[{"name":"tests","command":["npm","test"]}]',
      }),
    ).toMatchObject({
      repo: "/srv/repo",
      target: "main",
      checks: [{ name: "tests", timeoutMs: 120000 }],
    });
    expect(() => codeConfigFromEnv({ TRIAS_CODE_REPO: "rel/path" })).toThrow(/absolute path/);
    expect(() =>
      codeConfigFromEnv({ TRIAS_CODE_REPO: "/r", TRIAS_CODE_CHECKS: "npm test" }),
    ).toThrow(/TRIAS_CODE_CHECKS is not JSON/);
  });
});

describe("the shipped code policy (deploy/policies/code.yaml)", () => {
  const policy = loadPolicy(shippedPolicyFile("code"));
  const names = codePack.tools.map((t) => t.name);

  it("code policy - rates every tool of the pack, and names no other", () => {
    expect(policyCatalogueProblems(policy, names, "trias:code")).toEqual([]);
    expect(Object.keys(policy.doc.tools).sort()).toEqual([...names].sort());
  });

  it.each([
    ["code.stage", { change: "c", patch: "p", message: "m" }, "standard"],
    ["code.check", { change: "c" }, "light"],
    ["code.discard", { change: "c" }, "light"],
    ["code.commit", { change: "c" }, "full"],
  ] as const)("code policy - %s with %o is %s", (tool, args, tier) => {
    const d = decideTier(policy, { tool, args, run: { id: "r", step: 0, attempt: 1 } });
    expect(d.tier).toBe(tier);
    expect(d.denied).toBeNull();
  });

  it("code policy - a patch touching CI configuration is refused by the rules reviewer", () => {
    const ci = patchFor("a", "b").replace(/app\.txt/g, ".github/workflows/ci.yml");
    expect(
      checkArguments(policy, "code.stage", { change: "c", patch: ci, message: "m" }),
    ).toMatchObject({ decision: "reject" });
    expect(
      checkArguments(policy, "code.stage", { change: "c", patch: patchFor("a", "b"), message: "m" })
        .decision,
    ).toBe("approve");
  });
});
