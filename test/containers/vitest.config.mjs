import { defineConfig } from "vitest/config";

// `pnpm test:containers` only (scripts/test-containers.sh): the default config's include
// does not match *.ctest.ts, so `pnpm test` never starts containers.
export default defineConfig({
  test: {
    root: `${import.meta.dirname}/../..`,
    include: ["test/containers/**/*.ctest.ts"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ["default"],
  },
});
