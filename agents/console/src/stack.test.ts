import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { AGENT_NODE_FLAGS, agentNodeFlags } from "./stack.js";

/** The old-generation ceiling a node process started like an agent ends up with, in MB. */
function heapLimitMb(nodeOptions: string | undefined): number {
  const out = execFileSync(
    process.execPath,
    [
      ...agentNodeFlags(nodeOptions),
      "-e",
      "process.stdout.write(String(require('v8').getHeapStatistics().heap_size_limit))",
    ],
    { env: { ...process.env, NODE_OPTIONS: nodeOptions ?? "" }, encoding: "utf8" },
  );
  return Number(out) / 2 ** 20;
}

describe("stack", () => {
  it("stack - agents get the default heap flags, and a heap flag in NODE_OPTIONS replaces its default", () => {
    expect(agentNodeFlags(undefined)).toEqual(AGENT_NODE_FLAGS);
    expect(agentNodeFlags("--max-old-space-size=256 --inspect")).not.toContain(
      "--max-old-space-size=128",
    );
    // Checked on real processes: flags on the command line would otherwise win.
    const byDefault = heapLimitMb(undefined);
    const raised = heapLimitMb("--max-old-space-size=256");
    expect(byDefault).toBeLessThan(200);
    expect(raised).toBeGreaterThan(256);
  });
});
