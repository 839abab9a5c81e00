import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "shared/*/src/**/*.test.ts",
      "agents/*/src/**/*.test.ts",
      "test/**/*.test.ts",
      "bench/src/**/*.test.ts",
    ],
    // Slow suites run with `pnpm test:slow` (vitest.slow.config.ts).
    exclude: ["**/node_modules/**", "**/dist/**", "test/slow/**"],
    // Cross-process tests start a nats-server and seven agents each: two files at a time
    // is what a 2-core machine carries without timing noise.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ["default"],
  },
});
