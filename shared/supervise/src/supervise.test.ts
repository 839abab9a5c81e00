import { spawn } from "node:child_process";
import { once } from "node:events";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { signalExitCode, Supervisor } from "./index.js";

const DIST = join(import.meta.dirname, "..", "dist", "index.js");

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function gone(pids: number[], withinMs = 10_000): Promise<number[]> {
  const deadline = Date.now() + withinMs;
  while (Date.now() < deadline && pids.some(alive)) await new Promise((r) => setTimeout(r, 50));
  return pids.filter(alive);
}

describe("signalExitCode", () => {
  it.each([
    ["SIGHUP", 129],
    ["SIGINT", 130],
    ["SIGTERM", 143],
  ] as const)("%s exits %i, as a shell reports it", (sig, code) => {
    expect(signalExitCode(sig)).toBe(code);
  });
});

describe("Supervisor", () => {
  it("stopAll ends every child, SIGKILLing one that ignores SIGTERM after the grace period", async () => {
    const sup = new Supervisor();
    const polite = sup.spawn("polite", "sleep", ["60"]);
    const stubborn = sup.spawn(
      "stubborn",
      process.execPath,
      [
        "-e",
        "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); process.stdout.write('ready')",
      ],
      { stdio: ["ignore", "pipe", "ignore"] },
    );
    await once(stubborn.child.stdout!, "data");
    await sup.stopAll("SIGTERM", 300);
    expect((await polite.exited).signal).toBe("SIGTERM");
    expect((await stubborn.exited).signal).toBe("SIGKILL");
    expect(sup.names()).toEqual([]);
  });

  it("a process that gets SIGTERM runs its shutdown hook and leaves no child behind", async () => {
    // A parent like `trias demo`: children under a Supervisor, stopAll as the shutdown hook.
    const script = `
      const { Supervisor, onShutdown } = await import(${JSON.stringify(DIST)});
      const sup = new Supervisor();
      const a = sup.spawn("a", "sleep", ["60"]);
      const b = sup.spawn("b", "sleep", ["60"]);
      onShutdown(() => sup.stopAll());
      process.stdout.write(JSON.stringify([a.pid, b.pid]) + "\\n");
      setInterval(() => {}, 1000);
    `;
    const parent = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "inherit"],
    });
    const [line] = (await once(parent.stdout, "data")) as [Buffer];
    const pids = JSON.parse(line.toString()) as number[];
    expect(pids.every(alive)).toBe(true);
    parent.kill("SIGTERM");
    const [code] = (await once(parent, "exit")) as [number | null];
    expect(code).toBe(143);
    expect(await gone(pids)).toEqual([]);
  });

  it("children still running when the parent exits on an error are signalled", async () => {
    const script = `
      const { Supervisor } = await import(${JSON.stringify(DIST)});
      const sup = new Supervisor();
      const a = sup.spawn("a", "sleep", ["60"]);
      process.stdout.write(JSON.stringify([a.pid]) + "\\n");
      setTimeout(() => { throw new Error("boom"); }, 100);
    `;
    const parent = spawn(process.execPath, ["--input-type=module", "-e", script], {
      stdio: ["ignore", "pipe", "ignore"],
    });
    const [line] = (await once(parent.stdout, "data")) as [Buffer];
    const pids = JSON.parse(line.toString()) as number[];
    const [code] = (await once(parent, "exit")) as [number | null];
    expect(code).not.toBe(0);
    expect(await gone(pids)).toEqual([]);
  });
});
