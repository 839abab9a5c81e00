import { defineConfig } from "vitest/config";

// The slow suites, each run by its own script (never by `pnpm test`, whose include does not
// match *.ctest.ts): `pnpm test:containers` (scripts/test-containers.sh, test/containers/)
// and `pnpm test:cluster` (test/cluster.ctest.ts, a 3-node NATS cluster).
export default defineConfig({
  test: {
    root: `${import.meta.dirname}/..`,
    include: ["test/**/*.ctest.ts"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ["default"],
  },
});
