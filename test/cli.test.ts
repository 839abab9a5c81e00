import { execFile, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildProgram, EXIT, normalizeArgv } from "@trias/console";
import { Supervisor } from "@trias/supervise";
import { waitFor } from "@trias/testing";
import { REPO, startHarness, type Harness } from "./helpers/harness.js";

const CLI = join(REPO, "agents", "console", "dist", "cli.js");

function cliSync(args: string[], env: Record<string, string | undefined> = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], {
    env: { ...process.env, NATS_URL: undefined, ...env },
    encoding: "utf8",
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function cliAsync(
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [CLI, ...args],
      { env: { ...process.env, NATS_URL: undefined } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === "number" ? err.code : 1) : 0, stdout, stderr }),
    );
  });
}

/** Every command path of the program: ["demo"], ["keys", "init"], ... */
type Command = ReturnType<typeof buildProgram>;
function commandPaths(c: Command, prefix: string[] = []): string[][] {
  return c.commands.flatMap((sub) => {
    const path = [...prefix, sub.name()];
    return [path, ...commandPaths(sub, path)];
  });
}

describe("cli without a server", () => {
  it("cli - every command answers --help from its definition, exit 0", async () => {
    const paths = commandPaths(buildProgram());
    expect(paths.length).toBeGreaterThan(15);
    // A few processes at a time: each is a cold Node start.
    const queue = [...paths];
    const worker = async () => {
      for (let path = queue.shift(); path; path = queue.shift()) {
        const r = await cliAsync([...path, "--help"]);
        expect(r.code, `${path.join(" ")} --help: ${r.stderr}`).toBe(EXIT.ok);
        expect(r.stdout).toContain(`Usage: trias ${path.join(" ")}`);
      }
    };
    await Promise.all([worker(), worker(), worker(), worker()]);
  }, 240_000);

  it("cli - usage errors exit 2 with a message and no stack trace", () => {
    const cases: [string[], RegExp][] = [
      [["frobnicate"], /unknown command 'frobnicate'/],
      [["approve", "run-1", "first"], /step must be a whole number/],
      [["reject", "run-1", "0"], /required option '--reason <text>'/],
      [["demo", "--env", "moon"], /Allowed choices are dev, staging, prod/],
      [["submit", "transfer", "{not json"], /input is not JSON/],
    ];
    for (const [args, message] of cases) {
      const r = cliSync(args);
      expect(r.code, args.join(" ")).toBe(EXIT.usage);
      expect(r.stderr).toMatch(message);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
    const bare = cliSync([]);
    expect(bare.code).toBe(EXIT.usage);
    expect(bare.stdout).toContain("Usage: trias");
  });

  it("cli - `pnpm start -- --env prod` passes a `--` that is dropped", () => {
    expect(normalizeArgv(["demo", "--", "--env", "prod"])).toEqual(["demo", "--env", "prod"]);
    expect(normalizeArgv(["--", "audit", "r"])).toEqual(["audit", "r"]);
    // Parsed as the demo's option, not as a stray argument: an unknown environment is refused by name.
    const r = cliSync(["demo", "--", "--env", "moon"]);
    expect(r.code).toBe(EXIT.usage);
    expect(r.stderr).toMatch(/option '--env <environment>' argument 'moon' is invalid/);
  });

  it("cli - a missing environment or file is named, exit 4 or 3", () => {
    const noNats = cliSync(["ledger"]);
    expect(noNats.code).toBe(EXIT.unavailable);
    expect(noNats.stderr).toMatch(/NATS_URL is not set/);
    const noFile = cliSync(["audit", "--file", "/nonexistent/run.trace"]);
    expect(noFile.code).toBe(EXIT.usage);
    expect(noFile.stderr).toMatch(/no such file: \/nonexistent\/run.trace/);
  });

  it("cli - policy test runs expected decisions: exit 0 when all pass, 1 naming each failing field", () => {
    const prod = join(REPO, "deploy", "policies", "prod.yaml");
    const ok = cliSync([
      "policy",
      "test",
      prod,
      join(REPO, "deploy", "policy-tests", "prod.cases.yaml"),
    ]);
    expect(ok.code, ok.stdout + ok.stderr).toBe(EXIT.ok);
    expect(ok.stdout).toMatch(/5 passed, 0 failed/);
    const dir = mkdtempSync(join(tmpdir(), "trias-cases-"));
    try {
      const file = join(dir, "cases.yaml");
      writeFileSync(
        file,
        "cases:\n  - name: balance is full\n    step: { tool: ledger.balance, args: { account: a } }\n    expect: { tier: full }\n",
      );
      const bad = cliSync(["policy", "test", prod, file]);
      expect(bad.code).toBe(EXIT.failed);
      expect(bad.stdout).toContain('FAIL balance is full\n     tier: expected "full", got "light"');
      const diff = cliSync([
        "policy",
        "diff",
        join(REPO, "deploy", "policies", "staging.yaml"),
        prod,
      ]);
      expect(diff.code).toBe(EXIT.ok);
      expect(diff.stdout).toMatch(
        /~ rule irreversible-needs-human: .*require \{"human":true\} -> \{"human":\{"group":"treasury","count":2\}\}\s+\(affects ledger.close_account\)/,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("cli - a reader that goes away (| true) is not an error: no EPIPE stack trace", () => {
    const r = spawnSync(
      "bash",
      [
        "-c",
        `"${process.execPath}" "${CLI}" nats-config | true; echo "status=\${PIPESTATUS[0]}" >&2`,
      ],
      {
        encoding: "utf8",
      },
    );
    expect(r.stderr).not.toMatch(/EPIPE|\n\s+at /);
    expect(r.stderr).toMatch(/status=0/);
  });
});

/** Every process descending from `pid`, from /proc. */
function descendants(pid: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      parent.set(Number(d), ppid);
    } catch {
      // the process ended while we looked
    }
  }
  const out: number[] = [];
  const walk = (p: number) => {
    for (const [child, pp] of parent)
      if (pp === p) {
        out.push(child);
        walk(child);
      }
  };
  walk(pid);
  return out;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("cli signals", () => {
  it("cli - SIGTERM to `trias demo` stops nats-server and every agent it started, exit 143", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trias-cli-demo-"));
    const sup = new Supervisor();
    try {
      const { child: demo } = sup.spawn(
        "demo",
        process.execPath,
        [CLI, "demo", "--", "--env", "prod"],
        {
          env: {
            ...process.env,
            NATS_URL: undefined,
            NO_COLOR: "1",
            TRIAS_KEY_DIR: join(dir, "keys"),
          },
          stdio: ["ignore", "pipe", "pipe"],
        },
      );
      let out = "";
      demo.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      demo.stderr?.on("data", (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((r) => demo.once("exit", (c) => r(c)));
      await waitFor(
        "the demo's stack to run",
        () => (out.includes("running as separate processes") ? true : undefined),
        60_000,
      );
      expect(out).toContain("environment prod");
      const started = descendants(demo.pid!);
      // nats-server and six agents (proposer, router, two reviewers, executor, verifier).
      expect(started.length).toBeGreaterThanOrEqual(7);
      demo.kill("SIGTERM");
      expect(await exited).toBe(143);
      await waitFor(
        "every child to be gone",
        () => (started.some(alive) ? undefined : true),
        15_000,
      );
    } finally {
      await sup.stopAll();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("cli: a person added while `trias up` runs", () => {
  it("cli - keys add-human while `trias up` runs: the person gets their own NATS user at once and approves a step with it", async () => {
    const dir = mkdtempSync(join(tmpdir(), "trias-cli-up-"));
    const keyDir = join(dir, "keys");
    const sup = new Supervisor();
    try {
      const { child: up } = sup.spawn("up", process.execPath, [CLI, "up", "--env", "staging"], {
        env: {
          ...process.env,
          NATS_URL: undefined,
          NATS_USER: undefined,
          NATS_PASSWORD: undefined,
          NO_COLOR: "1",
          TRIAS_KEY_DIR: keyDir,
        },
        cwd: dir,
        stdio: ["ignore", "pipe", "pipe"],
      });
      let out = "";
      up.stdout?.on("data", (d: Buffer) => (out += d.toString()));
      up.stderr?.on("data", (d: Buffer) => (out += d.toString()));
      const [, url, user, pass] = await waitFor(
        "trias up to run",
        () => /export NATS_URL=(\S+) NATS_USER=(\S+) NATS_PASSWORD=(\S+)/.exec(out) ?? undefined,
        60_000,
      );
      const admin = { NATS_URL: url, NATS_USER: user, NATS_PASSWORD: pass, TRIAS_KEY_DIR: keyDir };
      // As a person runs the CLI: no NATS_USER, so `--as frank` connects as frank's own user.
      const frank = { NATS_URL: url, NATS_USER: undefined, TRIAS_KEY_DIR: keyDir };
      const add = cliSync(["keys", "add-human", "frank", "--group", "treasury", "--dir", keyDir]);
      expect(add.code, add.stdout + add.stderr).toBe(0);
      expect(add.stdout).toContain("NATS user frank (role human");
      await waitFor(
        "frank's NATS user to be served",
        () => (out.includes("NATS user(s) added: frank") ? true : undefined),
        15_000,
      );
      // The agents read the registry once a second.
      await new Promise((r) => setTimeout(r, 1500));
      const sub = cliSync(
        ["submit", "close-account", '{"account":"dave"}', "--requested-by", "alice"],
        admin,
      );
      expect(sub.code, sub.stdout + sub.stderr).toBe(0);
      const run = /submitted (\S+)/.exec(sub.stdout)![1]!;
      await waitFor(
        "the close to wait for a person",
        () =>
          cliSync(["pending", run], admin).stdout.includes(`${run} step 1`) ? true : undefined,
        30_000,
      );
      const ok = cliSync(["approve", run, "1", "--as", "frank"], frank);
      expect(ok.code, ok.stdout + ok.stderr).toBe(0);
      await waitFor(
        "the run to complete",
        () =>
          cliSync(["runs", "--status", "completed"], admin).stdout.includes(run) ? true : undefined,
        30_000,
      );
    } finally {
      await sup.stopAll();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("cli against a stack", () => {
  let h: Harness;
  const cli = (args: string[]) => {
    const admin = h.stack.natsCredentials("admin");
    return cliSync(args, {
      NATS_URL: h.stack.natsUrl,
      NATS_USER: admin.user ?? "",
      NATS_PASSWORD: admin.pass ?? "",
      TRIAS_KEY_DIR: h.keyDir,
    });
  };
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("cli - audit, replay, trace and export of an unknown run say `no such run`, exit 3", () => {
    for (const args of [
      ["audit", "run-nope"],
      ["replay", "run-nope"],
      ["trace", "run-nope"],
      ["export", "run-nope", "/tmp/x.trace"],
    ]) {
      const r = cli(args);
      expect(r.code, args.join(" ")).toBe(EXIT.notFound);
      expect(r.stderr).toMatch(/no such run: run-nope/);
    }
  });
});
