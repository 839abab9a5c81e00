// `pnpm test`: build, run every test (vitest), and end with one plain summary line
// ("tests: N passed, N failed") that any CI can read. The exit code is vitest's.
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const build = spawnSync("pnpm", ["exec", "tsc", "-b"], { stdio: "inherit" });
if (build.status !== 0) {
  console.log("tests: 0 passed, 1 failed (the build failed; nothing ran)");
  process.exit(build.status ?? 1);
}
const dir = mkdtempSync(join(tmpdir(), "trias-vitest-"));
const report = join(dir, "report.json");
const run = spawnSync(
  "pnpm",
  [
    "exec",
    "vitest",
    "run",
    "--reporter=default",
    "--reporter=json",
    `--outputFile.json=${report}`,
    ...process.argv.slice(2),
  ],
  { stdio: "inherit" },
);
let summary = "tests: 0 passed, 1 failed (no report: the runner itself failed)";
try {
  const r = JSON.parse(readFileSync(report, "utf8"));
  const failed =
    r.numFailedTests +
    (r.numFailedTestSuites > 0 && r.numFailedTests === 0 ? r.numFailedTestSuites : 0);
  summary = `tests: ${r.numPassedTests} passed, ${failed} failed${r.numPendingTests ? `, ${r.numPendingTests} skipped` : ""}`;
  if (r.numTotalTests === 0) summary = "tests: 0 passed, 1 failed (no test ran)";
} catch {
  // keep the failure summary
}
rmSync(dir, { recursive: true, force: true });
console.log(summary);
process.exit(run.status ?? 1);
