import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { REPO_ROOT } from "@trias/console";

// scripts/check-refs.mjs, run by .ci/run, on a small workspace of its own: two packages,
// `b` depending on `a`, each with a test, and the root solution and unit-test projects.
describe("check-refs", () => {
  let dir = "";
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  function workspace(o: { bRefs: string[]; bExclude?: boolean; solution?: string[] }) {
    dir = mkdtempSync(join(tmpdir(), "trias-refs-"));
    const write = (file: string, value: unknown) => {
      mkdirSync(dirname(join(dir, file)), { recursive: true });
      writeFileSync(
        join(dir, file),
        typeof value === "string" ? value : JSON.stringify(value, null, 2),
      );
    };
    write("pnpm-workspace.yaml", "packages:\n  - pkgs/*\n");
    write("pkgs/a/package.json", { name: "@x/a" });
    write("pkgs/a/tsconfig.json", { include: ["src"], exclude: ["src/**/*.test.ts"] });
    write("pkgs/a/src/a.test.ts", "");
    write("pkgs/b/package.json", { name: "@x/b", dependencies: { "@x/a": "workspace:*" } });
    write("pkgs/b/tsconfig.json", {
      include: ["src"],
      ...(o.bExclude === false ? {} : { exclude: ["src/**/*.test.ts"] }),
      references: o.bRefs.map((path) => ({ path })),
    });
    write("pkgs/b/src/b.test.ts", "");
    const solution = o.solution ?? ["pkgs/a", "pkgs/b"];
    write("tsconfig.json", {
      files: [],
      references: [...solution, "./tsconfig.test.json"].map((path) => ({ path })),
    });
    write("tsconfig.test.json", { references: [{ path: "pkgs/a" }, { path: "pkgs/b" }] });
    const r = spawnSync(process.execPath, [join(REPO_ROOT, "scripts", "check-refs.mjs"), dir], {
      encoding: "utf8",
    });
    return { code: r.status, out: r.stdout + r.stderr };
  }

  it("check-refs - passes when references match workspace dependencies", () => {
    const r = workspace({ bRefs: ["../a"] });
    expect(r.out).toMatch(/2 packages, references match/);
    expect(r.code).toBe(0);
  });

  it("check-refs - names a workspace dependency that is not a project reference, and the fix", () => {
    const r = workspace({ bRefs: [] });
    expect(r.code).toBe(1);
    expect(r.out).toContain(
      'pkgs/b/tsconfig.json: depends on pkgs/a but does not reference it; add { "path": "../a" }',
    );
  });

  it("check-refs - names a reference that is not a dependency", () => {
    const r = workspace({ bRefs: ["../a", "../../pkgs/a/../c"] });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/references pkgs\/c, which is not a workspace dependency/);
  });

  it("check-refs - refuses a package that emits its tests, and a solution missing a package", () => {
    const r = workspace({ bRefs: ["../a"], bExclude: false, solution: ["pkgs/a"] });
    expect(r.code).toBe(1);
    expect(r.out).toContain("pkgs/b/tsconfig.json: emits its tests into dist/");
    expect(r.out).toContain("tsconfig.json: does not reference pkgs/b");
  });
});
