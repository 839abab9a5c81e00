import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { REPO_ROOT } from "@trias/console";

// An agent started with a wrong setting stops before connecting anywhere, with one line that
// names the variable, what it held and what it must be: no stack trace, exit code 1.
describe("agent configuration", () => {
  const dir = mkdtempSync(join(tmpdir(), "trias-config-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  function start(role: string, env: Record<string, string>) {
    return spawnSync(process.execPath, [join(REPO_ROOT, "agents", role, "dist", "main.js")], {
      cwd: dir,
      env: { PATH: process.env["PATH"] ?? "", TRIAS_KEY_DIR: dir, ...env },
      encoding: "utf8",
      timeout: 30_000,
    });
  }

  it("agent configuration - TRIAS_ACK_WAIT_MS=abc is refused at start, naming the variable", () => {
    const r = start("router", { TRIAS_ACK_WAIT_MS: "abc" });
    expect(r.status).toBe(1);
    expect(r.stderr.trim()).toBe(
      'trias router: invalid environment: TRIAS_ACK_WAIT_MS="abc" must be a whole number of milliseconds greater than 0 (default 30000)',
    );
  });

  it("agent configuration - a reviewer's unknown strategy is refused at start", () => {
    const r = start("reviewer", { TRIAS_REVIEWER_STRATEGY: "human" });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(
      /^trias reviewer: .*TRIAS_REVIEWER_STRATEGY="human" must be one of rules, llm/,
    );
    expect(r.stderr).not.toMatch(/\n\s+at /);
  });
});
