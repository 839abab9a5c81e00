// `node scripts/check-refs.mjs [workspace-root]` (run by .ci/run): every package's TypeScript project
// references are exactly its workspace dependencies (a devDependency serves only its tests,
// which tsconfig.test.json checks), so `tsc -b <package>` builds on a clean
// tree; the root solution references every package and the unit-test project; no package
// emits its tests into dist/; the unit-test project references every package with tests.
// Prints each mismatch with the fix, and exits 1 if there is one.
import { existsSync, readFileSync, readdirSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

// The repository this script sits in, or the workspace given as the first argument.
const root = resolve(process.argv[2] ?? join(dirname(fileURLToPath(import.meta.url)), ".."));
const readJson = (file) => JSON.parse(readFileSync(join(root, file), "utf8"));
const problems = [];

// pnpm-workspace.yaml's `packages:` list: entries are a directory or `dir/*`.
const globs = [];
let inPackages = false;
for (const line of readFileSync(join(root, "pnpm-workspace.yaml"), "utf8").split("\n")) {
  if (/^\S/.test(line)) inPackages = line.startsWith("packages:");
  const m = inPackages && /^\s+-\s+["']?([^"'\s]+)["']?\s*$/.exec(line);
  if (m) globs.push(m[1]);
}
const dirs = globs.flatMap((g) =>
  g.endsWith("/*")
    ? readdirSync(join(root, g.slice(0, -2)), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => `${g.slice(0, -2)}/${e.name}`)
    : [g],
);
const packages = dirs
  .filter((d) => existsSync(join(root, d, "package.json")))
  .map((dir) => ({ dir, pkg: readJson(`${dir}/package.json`) }));
const dirOf = new Map(packages.map((p) => [p.pkg.name, p.dir]));

/** The package directories a tsconfig references, relative to the repository root. */
function references(file) {
  const base = dirname(join(root, file));
  return (readJson(file).references ?? []).map((r) => {
    const target = resolve(base, r.path);
    return relative(root, target.endsWith(".json") ? dirname(target) : target) || ".";
  });
}
const hasTests = (dir) =>
  existsSync(join(root, dir, "src")) &&
  readdirSync(join(root, dir, "src"), { recursive: true }).some((f) =>
    String(f).endsWith(".test.ts"),
  );

for (const { dir, pkg } of packages) {
  const tsconfig = `${dir}/tsconfig.json`;
  if (!existsSync(join(root, tsconfig))) {
    problems.push(`${dir}: no tsconfig.json`);
    continue;
  }
  const want = Object.entries({ ...pkg.dependencies, ...pkg.optionalDependencies })
    .filter(([, spec]) => String(spec).startsWith("workspace:"))
    .map(([name]) => dirOf.get(name) ?? `(unknown workspace package ${name})`);
  const have = references(tsconfig);
  for (const d of want)
    if (!have.includes(d))
      problems.push(
        `${tsconfig}: depends on ${d} but does not reference it; add { "path": "${relative(dir, d)}" }`,
      );
  for (const d of have)
    if (!want.includes(d))
      problems.push(
        `${tsconfig}: references ${d}, which is not a workspace dependency in ${dir}/package.json; add the dependency or drop the reference`,
      );
  const config = readJson(tsconfig);
  if (
    hasTests(dir) &&
    !config.compilerOptions?.noEmit &&
    !(config.exclude ?? []).includes("src/**/*.test.ts")
  )
    problems.push(
      `${tsconfig}: emits its tests into dist/; add "exclude": ["src/**/*.test.ts"] (tsconfig.test.json type-checks them)`,
    );
}

const solution = references("tsconfig.json");
for (const { dir } of packages)
  if (!solution.includes(dir)) problems.push(`tsconfig.json: does not reference ${dir}`);
if (!readJson("tsconfig.json").references.some((r) => r.path.endsWith("tsconfig.test.json")))
  problems.push(
    `tsconfig.json: does not reference tsconfig.test.json (the unit tests' type check)`,
  );
const testRefs = references("tsconfig.test.json");
for (const { dir } of packages)
  if (hasTests(dir) && !testRefs.includes(dir))
    problems.push(`tsconfig.test.json: ${dir} has tests but is not referenced`);

if (problems.length > 0) {
  for (const p of problems) console.error(`check-refs: ${p}`);
  process.exit(1);
}
console.log(
  `check-refs: ${packages.length} packages, references match their workspace dependencies`,
);
