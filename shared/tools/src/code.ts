import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { isAbsolute, join, resolve } from "node:path";
import { z } from "zod";
import { ValidationError } from "@trias/protocol";
import { defineTool, defineToolPack, ToolRefusal, type Tool, type ToolContext } from "./pack.js";

/**
 * Transactional code changes (docs/code-changes.md): a patch is staged on its own branch in
 * its own git worktree, checked there, and only then fast-forwarded into the target branch.
 * The main working tree is touched by `code.commit` alone.
 */

const CheckCommand = z
  .object({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9_-]*$/, "a check name: lowercase letters, digits, '_', '-'"),
    /** The program and its arguments, run without a shell in the staged worktree. */
    command: z.array(z.string().min(1)).min(1),
    /**
     * A check still running after this long fails (its process is killed).
     * @default 120000 (two minutes: a type check or a unit suite of a small repository)
     */
    timeoutMs: z.number().int().positive().default(120_000),
  })
  .strict();

export const CodeConfig = z
  .object({
    /** The git repository changes land in (TRIAS_CODE_REPO): an absolute path. */
    repo: z.string().refine(isAbsolute, "an absolute path to a git repository"),
    /** The checks every change must pass before commit (TRIAS_CODE_CHECKS, JSON). @default [] */
    checks: z.array(CheckCommand).default([]),
    /** The branch changes are committed to (TRIAS_CODE_TARGET). @default "main" */
    target: z.string().min(1).default("main"),
    /**
     * Where staged worktrees are created (TRIAS_CODE_WORKTREES): outside the repository's
     * working tree, so that staging never shows in its `git status`.
     * @default <os tmpdir>/trias-code-<hash of repo path>
     */
    worktrees: z.string().refine(isAbsolute, "an absolute path").optional(),
  })
  .strict();
export type CodeConfig = z.infer<typeof CodeConfig>;
export type CodeConfigInput = z.input<typeof CodeConfig>;

/** The pack's configuration from the environment (docs/tools.md: packs take no options yet). */
export function codeConfigFromEnv(env: Record<string, string | undefined>): CodeConfig | null {
  const repo = env["TRIAS_CODE_REPO"];
  if (repo === undefined || repo === "") return null;
  let checks: unknown = [];
  const raw = env["TRIAS_CODE_CHECKS"];
  if (raw !== undefined && raw !== "") {
    try {
      checks = JSON.parse(raw);
    } catch (e) {
      throw new ValidationError(
        "config_invalid",
        `TRIAS_CODE_CHECKS is not JSON (expected [{"name":"tests","command":["npm","test"]}]): ${(e as Error).message}`,
      );
    }
  }
  const r = CodeConfig.safeParse({
    repo,
    checks,
    ...(env["TRIAS_CODE_TARGET"] ? { target: env["TRIAS_CODE_TARGET"] } : {}),
    ...(env["TRIAS_CODE_WORKTREES"] ? { worktrees: env["TRIAS_CODE_WORKTREES"] } : {}),
  });
  if (!r.success)
    throw new ValidationError(
      "config_invalid",
      `the code pack's configuration (TRIAS_CODE_*) is invalid: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
    );
  return r.data;
}

export interface CodeResources {
  config: CodeConfig | null;
}
type Ctx = ToolContext<CodeResources>;

/**
 * Output of a check kept in the result (the tail: where failures are reported).
 * @default 4000 characters
 */
const OUTPUT_TAIL = 4000;
/**
 * Largest output read from one git or check process.
 * @default 16 MiB
 */
const MAX_BUFFER = 16 * 1024 * 1024;

interface Ran {
  code: number;
  out: string;
  timedOut: boolean;
}

/** Run a program (arguments as an array, never a shell), optionally feeding stdin. */
function run(
  file: string,
  args: readonly string[],
  o: { cwd: string; input?: string; timeoutMs?: number },
): Promise<Ran> {
  return new Promise((done) => {
    const child = execFile(
      file,
      args,
      {
        cwd: o.cwd,
        maxBuffer: MAX_BUFFER,
        ...(o.timeoutMs ? { timeout: o.timeoutMs, killSignal: "SIGKILL" as const } : {}),
        env: { ...process.env, GIT_TERMINAL_PROMPT: "0" },
      },
      (err, stdout, stderr) => {
        const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
        const code = e ? (typeof e.code === "number" ? e.code : -1) : 0;
        const out = `${stdout}${stderr}${e && typeof e.code !== "number" ? String(e.message) : ""}`;
        done({ code, out, timedOut: !!e?.killed });
      },
    );
    // A program that exits without reading its input closes the pipe: not an error here,
    // its exit status says what happened.
    child.stdin?.on("error", () => {});
    if (o.input !== undefined) child.stdin?.end(o.input);
    else child.stdin?.end();
  });
}

const IDENT = ["-c", "user.name=Trias", "-c", "user.email=trias@localhost"];

async function git(cwd: string, args: readonly string[], input?: string): Promise<string> {
  const r = await run("git", [...IDENT, ...args], {
    cwd,
    ...(input !== undefined ? { input } : {}),
  });
  if (r.code !== 0)
    throw new ToolRefusal(`git ${args.join(" ")} failed (exit ${r.code}): ${r.out.trim()}`);
  return r.out.trim();
}

async function gitOk(cwd: string, args: readonly string[]): Promise<string | null> {
  const r = await run("git", args, { cwd });
  return r.code === 0 ? r.out.trim() : null;
}

const queues = new Map<string, Promise<unknown>>();
/**
 * One operation at a time per repository in this process: a redelivered effect may run while
 * its first delivery is still running, and git's own checks (does the branch exist?) followed
 * by a change are not atomic. Only the executor changes the repository.
 */
function serial<T>(repo: string, fn: () => Promise<T>): Promise<T> {
  const prev = queues.get(repo) ?? Promise.resolve();
  const next = prev.then(fn, fn);
  queues.set(
    repo,
    next.then(
      () => undefined,
      () => undefined,
    ),
  );
  return next;
}

function cfgOf(ctx: Ctx): CodeConfig {
  if (!ctx.resources.config)
    throw new ToolRefusal(
      "the code pack has no repository: set TRIAS_CODE_REPO (and TRIAS_CODE_CHECKS) for the executor and the verifier (docs/code-changes.md)",
    );
  return ctx.resources.config;
}

const branchOf = (change: string) => `trias/${change}`;
const branchRef = (change: string) => `refs/heads/${branchOf(change)}`;
const checkedRef = (change: string) => `refs/trias/checked/${change}`;
const committedRef = (change: string) => `refs/trias/committed/${change}`;
function worktreeOf(cfg: CodeConfig, change: string): string {
  const base =
    cfg.worktrees ??
    join(
      tmpdir(),
      `trias-code-${createHash("sha256").update(resolve(cfg.repo)).digest("hex").slice(0, 12)}`,
    );
  return join(base, change);
}

const rev = (cwd: string, ref: string) =>
  gitOk(cwd, ["rev-parse", "--verify", "-q", `${ref}^{commit}`]);

const Change = z
  .string()
  .regex(
    /^[a-z0-9][a-z0-9._-]{0,62}$/,
    "a change name: lowercase letters, digits, '.', '_', '-' (it names the branch trias/<change>)",
  )
  .refine((s) => !s.includes("..") && !s.endsWith(".lock") && !s.endsWith("."), "a valid ref name");
const Sha = z.string().regex(/^[0-9a-f]{40}$/, "a full commit id");

/** Remove a staged change: its worktree, branch and check record. Absent parts are fine. */
async function discard(cfg: CodeConfig, change: string): Promise<void> {
  const wt = worktreeOf(cfg, change);
  if (existsSync(wt)) await gitOk(cfg.repo, ["worktree", "remove", "--force", wt]);
  await gitOk(cfg.repo, ["worktree", "prune"]);
  // Deleted by full ref name, and judged by what remains: a branch already gone is the goal.
  await gitOk(cfg.repo, ["update-ref", "-d", `refs/heads/${branchOf(change)}`]);
  await gitOk(cfg.repo, ["update-ref", "-d", checkedRef(change)]);
  if (await rev(cfg.repo, `refs/heads/${branchOf(change)}`))
    throw new ToolRefusal(`change ${change}: branch ${branchOf(change)} could not be removed`);
}

/** Is `target` checked out in the repository's own working tree? */
async function checkedOutInMain(cfg: CodeConfig): Promise<boolean> {
  return (await gitOk(cfg.repo, ["symbolic-ref", "-q", "--short", "HEAD"])) === cfg.target;
}

/**
 * Move the target branch forward to `to`, fast-forward only. When the target is checked out in
 * the main working tree, `git merge --ff-only` updates the files too (and refuses over local
 * changes that would be overwritten); otherwise only the ref moves, compare-and-swap.
 */
async function fastForward(cfg: CodeConfig, from: string, to: string): Promise<void> {
  if ((await gitOk(cfg.repo, ["merge-base", "--is-ancestor", from, to])) === null)
    throw new ToolRefusal(
      `${to} does not descend from ${cfg.target} at ${from}: not a fast-forward`,
    );
  if (await checkedOutInMain(cfg)) await git(cfg.repo, ["merge", "--ff-only", "-q", to]);
  else await git(cfg.repo, ["update-ref", `refs/heads/${cfg.target}`, to, from]);
}

const stage = defineTool({
  name: "code.stage",
  description:
    "Stage a change: apply a unified diff on a new branch trias/<change> in its own git worktree (the main working tree is not touched).",
  input: z
    .object({
      change: Change,
      patch: z.string().min(1).max(1_000_000),
      message: z.string().min(1).max(2000),
    })
    .strict(),
  op: "write",
  domains: ["code"],
  objects: { count: 1 },
  idempotent: true,
  async run({ change, patch, message }, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const branch = branchOf(change);
    const wt = worktreeOf(cfg, change);
    const trailer = `Trias-Effect: ${ctx.effectId}`;
    const existing = await rev(cfg.repo, branchRef(change));
    if (existing) {
      // A redelivery of this effect finds its own commit; anything else is a name clash.
      const body = await git(cfg.repo, ["log", "-1", "--format=%B", existing]);
      if (!body.includes(trailer) || !existsSync(wt))
        throw new ToolRefusal(
          `change ${change} is already staged (branch ${branch}) by another step`,
        );
      const base = await git(cfg.repo, ["rev-parse", `${existing}^`]);
      return { change, branch, worktree: wt, base, head: existing };
    }
    const base = await rev(cfg.repo, `refs/heads/${cfg.target}`);
    if (!base)
      throw new ToolRefusal(`the target branch ${cfg.target} does not exist in ${cfg.repo}`);
    mkdirSync(join(wt, ".."), { recursive: true });
    await git(cfg.repo, ["worktree", "add", "-q", "-b", branch, wt, base]);
    try {
      await git(wt, ["apply", "--index", "--whitespace=nowarn", "-"], patch);
      await git(wt, ["commit", "-q", "-m", `${message}\n\n${trailer}`]);
    } catch (e) {
      await discard(cfg, change);
      throw new ToolRefusal(`change ${change} cannot be staged: ${(e as Error).message}`, {
        cause: e,
      });
    }
    return { change, branch, worktree: wt, base, head: await git(wt, ["rev-parse", "HEAD"]) };
  },
  compensate: ({ change }) => ({ tool: "code.discard", args: { change } }),
  async verify({ change }, result, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const head = await rev(cfg.repo, branchRef(change));
    const wt = worktreeOf(cfg, change);
    return [
      { name: "worktree exists", ok: existsSync(wt), detail: wt },
      {
        name: "branch head as staged",
        ok: head === result.head,
        detail: `${branchOf(change)} at ${head ?? "(none)"}, staged ${result.head}`,
      },
    ];
  },
  output: z.object({
    change: z.string(),
    branch: z.string(),
    worktree: z.string(),
    base: Sha,
    head: Sha,
  }),
});

const discardTool = defineTool({
  name: "code.discard",
  description:
    "Discard a staged change: remove its worktree, its branch trias/<change> and its check record (the undo of code.stage).",
  input: z.object({ change: Change }).strict(),
  op: "write",
  domains: ["code"],
  objects: { count: 1 },
  idempotent: true,
  async run({ change }, ctx: Ctx) {
    await discard(cfgOf(ctx), change);
    return { change, discarded: true };
  },
  async verify({ change }, _r, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const branch = await rev(cfg.repo, branchRef(change));
    const wt = existsSync(worktreeOf(cfg, change));
    return [
      { name: "branch removed", ok: !branch, detail: branch ? `still at ${branch}` : "gone" },
      { name: "worktree removed", ok: !wt, detail: wt ? "still there" : "gone" },
    ];
  },
});

const check = defineTool({
  name: "code.check",
  description:
    "Run the configured checks (type check, tests) in a staged change's worktree; a failing check fails the step.",
  input: z.object({ change: Change }).strict(),
  op: "read",
  domains: ["code"],
  objects: { count: 1 },
  idempotent: true,
  async run({ change }, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const wt = worktreeOf(cfg, change);
    const head = await rev(cfg.repo, branchRef(change));
    if (!head || !existsSync(wt)) throw new ToolRefusal(`change ${change} is not staged`);
    const results: { name: string; ok: boolean; exit: number; output: string }[] = [];
    for (const c of cfg.checks) {
      const [file, ...args] = c.command as [string, ...string[]];
      const r = await run(file, args, { cwd: wt, timeoutMs: c.timeoutMs });
      const output = r.timedOut ? `timed out after ${c.timeoutMs} ms\n${r.out}` : r.out;
      results.push({
        name: c.name,
        ok: r.code === 0,
        exit: r.code,
        output: output.slice(-OUTPUT_TAIL),
      });
    }
    const failed = results.filter((r) => !r.ok);
    if (failed.length > 0)
      throw new ToolRefusal(
        `change ${change} fails ${failed.map((f) => `${f.name} (exit ${f.exit}): ${f.output.trim().split("\n").slice(-5).join(" | ")}`).join("; ")}`,
      );
    // The record code.commit requires: these checks passed on exactly this commit.
    await git(cfg.repo, ["update-ref", checkedRef(change), head]);
    return { change, head, passed: results.map((r) => r.name) };
  },
  async verify({ change }, result, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const rec = await rev(cfg.repo, checkedRef(change));
    return [
      {
        name: "checks recorded on the staged head",
        ok: rec === result.head,
        detail: `${checkedRef(change)} at ${rec ?? "(none)"}`,
      },
    ];
  },
  output: z.object({ change: z.string(), head: Sha, passed: z.array(z.string()) }),
});

const commit = defineTool({
  name: "code.commit",
  description:
    "Commit a staged change whose checks passed: fast-forward the target branch to it, then remove the worktree and branch.",
  input: z.object({ change: Change }).strict(),
  op: "write",
  domains: ["code"],
  objects: { count: 1 },
  idempotent: true,
  async run({ change }, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const head = await rev(cfg.repo, branchRef(change));
    const target = await rev(cfg.repo, `refs/heads/${cfg.target}`);
    if (!target) throw new ToolRefusal(`the target branch ${cfg.target} does not exist`);
    if (!head) {
      // A redelivery after the commit finds the branch gone and the record of what it merged.
      const done = await rev(cfg.repo, committedRef(change));
      if (done && (await gitOk(cfg.repo, ["merge-base", "--is-ancestor", done, target])) !== null)
        return {
          change,
          target: cfg.target,
          base: await git(cfg.repo, ["rev-parse", `${done}^`]),
          head: done,
        };
      throw new ToolRefusal(`change ${change} is not staged`);
    }
    const checked = await rev(cfg.repo, checkedRef(change));
    if (checked !== head)
      throw new ToolRefusal(
        `change ${change}: the checks have not passed on ${head} (run code.check first)`,
      );
    await fastForward(cfg, target, head);
    await git(cfg.repo, ["update-ref", committedRef(change), head]);
    await discard(cfg, change);
    return { change, target: cfg.target, base: target, head };
  },
  compensate: ({ change }, r) => ({
    tool: "code.revert",
    args: { change, base: r.base, head: r.head },
  }),
  async verify(_a, result, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const on =
      (await gitOk(cfg.repo, ["merge-base", "--is-ancestor", result.head, cfg.target])) !== null;
    return [
      {
        name: "commit on target",
        ok: on,
        detail: `${result.head} ${on ? "is" : "is not"} on ${cfg.target}`,
      },
    ];
  },
  output: z.object({ change: z.string(), target: z.string(), base: Sha, head: Sha }),
});

const revert = defineTool({
  name: "code.revert",
  description:
    "Revert a committed change with one revert commit on the target branch (the undo of code.commit).",
  input: z.object({ change: Change, base: Sha, head: Sha }).strict(),
  op: "write",
  domains: ["code"],
  objects: { count: 1 },
  idempotent: true,
  async run({ change, base, head }, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const trailer = `Trias-Revert-Of: ${head}`;
    const done = await gitOk(cfg.repo, [
      "log",
      "-1",
      "--format=%H",
      "-F",
      `--grep=${trailer}`,
      cfg.target,
    ]);
    if (done) return { change, revert: done };
    const target = await rev(cfg.repo, `refs/heads/${cfg.target}`);
    if (!target) throw new ToolRefusal(`the target branch ${cfg.target} does not exist`);
    // The revert is made in a worktree of its own, then fast-forwarded like a commit.
    const wt = worktreeOf(cfg, `${change}.revert`);
    if (existsSync(wt)) await gitOk(cfg.repo, ["worktree", "remove", "--force", wt]);
    mkdirSync(join(wt, ".."), { recursive: true });
    await git(cfg.repo, ["worktree", "add", "-q", "--detach", wt, target]);
    try {
      await git(wt, ["revert", "--no-commit", `${base}..${head}`]);
      await git(wt, [
        "commit",
        "-q",
        "-m",
        `Revert trias change ${change}\n\nA check after commit failed.\n\n${trailer}`,
      ]);
      const commitId = await git(wt, ["rev-parse", "HEAD"]);
      await fastForward(cfg, target, commitId);
      return { change, revert: commitId };
    } finally {
      await gitOk(cfg.repo, ["worktree", "remove", "--force", wt]);
    }
  },
  async verify({ base }, result, ctx: Ctx) {
    const cfg = cfgOf(ctx);
    const on =
      (await gitOk(cfg.repo, ["merge-base", "--is-ancestor", result.revert, cfg.target])) !== null;
    const tree = await gitOk(cfg.repo, ["diff", "--quiet", base, result.revert, "--"]);
    return [
      { name: "revert on target", ok: on, detail: `${result.revert} on ${cfg.target}: ${on}` },
      {
        name: "tree as before the change",
        ok: tree !== null,
        detail: tree !== null ? "same tree" : "the revert's tree differs from before the change",
      },
    ];
  },
  output: z.object({ change: z.string(), revert: Sha }),
});

/** Transactional code changes over one git repository (docs/code-changes.md). */
export const codePack = defineToolPack<CodeResources>({
  name: "code",
  tools: [stage, discardTool, check, commit, revert].map((t): Tool => ({
    ...t,
    run: (args, ctx) =>
      serial((ctx.resources as CodeResources).config?.repo ?? "", () => t.run(args, ctx)),
  })),
  open() {
    return Promise.resolve({ config: codeConfigFromEnv(process.env) });
  },
});
