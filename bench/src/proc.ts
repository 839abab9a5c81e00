import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";

/** Kernel clock ticks per second, the unit of utime/stime in /proc/<pid>/stat. */
export const CLK_TCK: number = (() => {
  try {
    const n = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(n) && n > 0 ? n : 100;
  } catch {
    return 100;
  }
})();

/** User + system CPU time of one process so far, in milliseconds; null when it is gone. */
export function cpuMs(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    const rest = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const utime = Number(rest[11]);
    const stime = Number(rest[12]);
    if (!Number.isFinite(utime) || !Number.isFinite(stime)) return null;
    return ((utime + stime) * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Resident set size of one process in bytes (VmRSS), or null when it is gone. */
export function rssBytes(pid: number): number | null {
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return m?.[1] ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Busy CPU time of the whole machine so far (all cores, everything but idle and iowait), in ms. */
export function machineBusyMs(): number | null {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const f = line.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal
    const busy = (f[0] ?? 0) + (f[1] ?? 0) + (f[2] ?? 0) + (f[5] ?? 0) + (f[6] ?? 0) + (f[7] ?? 0);
    return (busy * 1000) / CLK_TCK;
  } catch {
    return null;
  }
}

/** Name under which CpuMeter reports the whole machine's busy time. */
export const MACHINE = "(machine)";

/** CPU time of a set of processes, sampled together so a delta covers one interval. */
export class CpuMeter {
  readonly #pids: ReadonlyMap<string, number>;
  #start = new Map<string, number>();

  constructor(pids: ReadonlyMap<string, number>) {
    this.#pids = pids;
  }

  begin(): void {
    this.#start = this.#sample();
  }

  /** Milliseconds of CPU per process since begin(). */
  end(): Map<string, number> {
    const now = this.#sample();
    const out = new Map<string, number>();
    for (const [name, v] of now) out.set(name, v - (this.#start.get(name) ?? v));
    return out;
  }

  #sample(): Map<string, number> {
    const out = new Map<string, number>();
    const m = machineBusyMs();
    if (m !== null) out.set(MACHINE, m);
    for (const [name, pid] of this.#pids) {
      const v = cpuMs(pid);
      if (v !== null) out.set(name, v);
    }
    return out;
  }
}
