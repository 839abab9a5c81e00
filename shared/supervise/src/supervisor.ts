import { spawn, type ChildProcess, type StdioOptions } from "node:child_process";
import { closeSync, openSync } from "node:fs";

/**
 * How long a child gets to exit after SIGTERM before it is killed. Agents drain their
 * consumers on SIGTERM (docs/DESIGN.md, "shutdown"), which takes well under a second on a
 * loopback server; five seconds leaves room for a loaded machine.
 * @default 5000
 */
export const DEFAULT_GRACE_MS = 5_000;

/** Every child any Supervisor (or `track`) started and that has not exited yet. */
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/**
 * Last resort when the parent exits without stopping its children (an uncaught error, a
 * `process.exit` elsewhere): signal each one still running. Only synchronous work is
 * possible in an `exit` handler, so this sends SIGTERM and does not wait; agents and
 * nats-server end on SIGTERM by themselves.
 */
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on("exit", () => {
    for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill("SIGTERM");
  });
}

/** Watch a child started elsewhere (e.g. nats-server): signalled if the parent exits first. */
export function track(child: ChildProcess): void {
  installExitHook();
  if (child.exitCode !== null || child.signalCode !== null) return;
  live.add(child);
  child.once("exit", () => live.delete(child));
}

/** Pids of every tracked child still running (tests check none is left behind). */
export function livePids(): number[] {
  return [...live].flatMap((c) => (c.pid === undefined ? [] : [c.pid]));
}

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface SpawnOptions {
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Append the child's stdout and stderr to this file; without it they are discarded. */
  logFile?: string;
  /** Pass stdio through as given (overrides logFile). */
  stdio?: StdioOptions;
}

/** One supervised process. */
export class Supervised {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;

  constructor(name: string, child: ChildProcess) {
    this.name = name;
    this.child = child;
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null)
        resolve({ code: child.exitCode, signal: child.signalCode });
      else child.once("exit", (code, signal) => resolve({ code, signal }));
    });
    track(child);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Send `signal`; when the process is still running after `graceMs`, SIGKILL it. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = DEFAULT_GRACE_MS): Promise<ExitInfo> {
    if (!this.running) return this.exited;
    this.child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<void>((r) => (timer = setTimeout(r, graceMs)));
    await Promise.race([this.exited, late]);
    clearTimeout(timer);
    if (this.running) this.child.kill("SIGKILL");
    return this.exited;
  }
}

/**
 * A set of named child processes that are started and stopped together: the agents of a
 * stack, a benchmark's hops. `stopAll` leaves none running.
 */
export class Supervisor {
  readonly #children = new Map<string, Supervised>();

  spawn(name: string, command: string, args: readonly string[], o: SpawnOptions = {}): Supervised {
    if (this.#children.get(name)?.running)
      throw new Error(`a process named ${name} is already running`);
    const fd = o.stdio === undefined && o.logFile ? openSync(o.logFile, "a") : undefined;
    const stdio: StdioOptions = o.stdio ?? (fd === undefined ? "ignore" : ["ignore", fd, fd]);
    const child = spawn(command, args, {
      stdio,
      ...(o.env ? { env: o.env } : {}),
      ...(o.cwd ? { cwd: o.cwd } : {}),
    });
    if (fd !== undefined) closeSync(fd);
    const s = new Supervised(name, child);
    this.#children.set(name, s);
    return s;
  }

  get(name: string): Supervised | undefined {
    return this.#children.get(name);
  }

  has(name: string): boolean {
    return this.#children.get(name)?.running ?? false;
  }

  names(): string[] {
    return [...this.#children.keys()];
  }

  /** Stop one process (SIGKILL by default, as a crash) and forget it. */
  async stop(name: string, signal: NodeJS.Signals = "SIGKILL", graceMs = DEFAULT_GRACE_MS) {
    const s = this.#children.get(name);
    if (!s) return;
    await s.stop(signal, graceMs);
    this.#children.delete(name);
  }

  /** SIGTERM every process at once, SIGKILL any still running after `graceMs`. */
  async stopAll(signal: NodeJS.Signals = "SIGTERM", graceMs = DEFAULT_GRACE_MS): Promise<void> {
    const all = [...this.#children.values()];
    await Promise.all(all.map((s) => s.stop(signal, graceMs)));
    this.#children.clear();
  }
}
