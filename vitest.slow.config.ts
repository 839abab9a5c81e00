import { defineConfig } from "vitest/config";

// `pnpm test:slow`: suites too long for the default run (a 10,000-message flood). The same
// process settings as vitest.config.ts; only the files differ.
export default defineConfig({
  test: {
    include: ["test/slow/**/*.test.ts"],
    exclude: ["**/node_modules/**", "**/dist/**"],
    pool: "forks",
    maxWorkers: 1,
    testTimeout: 300_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
