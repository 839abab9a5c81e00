import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { TransientError, ValidationError } from "@trias/protocol";
import { track } from "@trias/supervise";
import { natsConfig, passwordEnvVar, type NatsUser } from "./nats-config.js";

export const NATS_INSTALL_HINT =
  "nats-server was not found: install it with `sudo apt-get install -y nats-server` (Debian/Ubuntu) or set NATS_URL to a running server";

/** Find a nats-server binary: $NATS_SERVER_BIN, then PATH, then the Debian location. */
export function findNatsServer(): string | null {
  const explicit = process.env["NATS_SERVER_BIN"];
  if (explicit && existsSync(explicit)) return explicit;
  const dirs = (process.env["PATH"] ?? "")
    .split(delimiter)
    .concat(["/usr/sbin", "/usr/local/sbin", "/usr/local/bin"]);
  for (const d of dirs) {
    const p = join(d, "nats-server");
    if (d && existsSync(p)) return p;
  }
  return null;
}

/**
 * How long a started nats-server may take to listen. It is ready in well under a second on an
 * idle machine; 10 s was exceeded on a 2-core machine at load average 20 (the suite beside
 * other work), where a slow start is not a failure.
 */
export const SERVER_START_TIMEOUT_MS = 30_000;

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

async function waitForPort(port: number, timeoutMs: number, child: ChildProcess): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null)
      throw new TransientError("bus_unavailable", `nats-server exited with code ${child.exitCode}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = tcpConnect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new TransientError(
    "timeout",
    `nats-server did not listen on port ${port} within ${timeoutMs} ms`,
  );
}

export interface LocalServerOptions {
  /** Directory for JetStream files; a temp dir (removed on stop) when absent. */
  storeDir?: string;
  port?: number;
  users?: readonly NatsUser[];
  /** Write the server's own log here (else it is discarded). */
  logFile?: string;
}

/** A nats-server child process with JetStream, on loopback. */
export class LocalNatsServer {
  readonly port: number;
  readonly storeDir: string;
  readonly url: string;
  readonly #bin: string;
  readonly #confPath: string;
  readonly #ownsStore: boolean;
  readonly #workDir: string;
  /** The users' passwords, read by the configuration as environment references. */
  readonly #env: Record<string, string>;
  #child: ChildProcess | null = null;

  private constructor(
    bin: string,
    port: number,
    storeDir: string,
    workDir: string,
    ownsStore: boolean,
    confPath: string,
    env: Record<string, string>,
  ) {
    this.#bin = bin;
    this.port = port;
    this.storeDir = storeDir;
    this.url = `nats://127.0.0.1:${port}`;
    this.#workDir = workDir;
    this.#ownsStore = ownsStore;
    this.#confPath = confPath;
    this.#env = env;
  }

  static async start(o: LocalServerOptions = {}): Promise<LocalNatsServer> {
    const bin = findNatsServer();
    if (!bin) throw new ValidationError("config_invalid", NATS_INSTALL_HINT);
    const workDir = mkdtempSync(join(tmpdir(), "trias-nats-"));
    const storeDir = o.storeDir ?? join(workDir, "store");
    mkdirSync(storeDir, { recursive: true });
    const port = o.port ?? (await freePort());
    const confPath = join(workDir, "nats.conf");
    // The configuration deploy/nats/nats.conf ships (passwords as environment references),
    // with this server's own port, store and identities.
    writeFileSync(
      confPath,
      natsConfig({
        port,
        storeDir,
        passwordsFromEnv: true,
        ...(o.users ? { users: o.users } : {}),
      }),
      { mode: 0o600 },
    );
    // Quoted: nats-server parses a variable's value as a configuration value, so an
    // unquoted password that starts with a digit would be read as a number.
    const env = Object.fromEntries(
      (o.users ?? []).map((u) => [passwordEnvVar(u.user), JSON.stringify(u.password)]),
    );
    const s = new LocalNatsServer(
      bin,
      port,
      storeDir,
      workDir,
      o.storeDir === undefined,
      confPath,
      env,
    );
    await s.#spawn(o.logFile);
    return s;
  }

  async #spawn(logFile?: string): Promise<void> {
    const args = ["-c", this.#confPath];
    if (logFile) args.push("-l", logFile);
    const child = spawn(this.#bin, args, {
      stdio: ["ignore", "ignore", "pipe"],
      env: { ...process.env, ...this.#env },
    });
    // Signalled if this process exits without stopping the server (docs/cli.md, "signals").
    track(child);
    let stderr = "";
    child.stderr?.on("data", (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    this.#child = child;
    try {
      await waitForPort(this.port, SERVER_START_TIMEOUT_MS, child);
    } catch (e) {
      child.kill("SIGKILL");
      throw new TransientError(
        "bus_unavailable",
        `nats-server failed to start: ${stderr.trim() || (e as Error).message}`,
        { cause: e },
      );
    }
  }

  /**
   * Serve `users` from now on without a restart: the configuration is rewritten and the
   * server reloads it (SIGHUP, as `nats-server --signal reload`). A running process's
   * environment cannot change, so the reloaded file carries the passwords itself (mode
   * 0600, in this server's own directory) instead of environment references.
   */
  reload(users: readonly NatsUser[]): void {
    writeFileSync(this.#confPath, natsConfig({ port: this.port, storeDir: this.storeDir, users }), {
      mode: 0o600,
    });
    this.#child?.kill("SIGHUP");
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** Stop the server process; its store stays, so `start` again picks up every stream. */
  async stopProcess(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    const child = this.#child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      child.once("exit", () => {
        clearTimeout(t);
        resolve();
      });
      child.kill(signal);
    });
    this.#child = null;
  }

  async restart(logFile?: string): Promise<void> {
    await this.stopProcess();
    await this.#spawn(logFile);
  }

  async stop(): Promise<void> {
    await this.stopProcess();
    rmSync(this.#workDir, { recursive: true, force: true });
    if (!this.#ownsStore) return;
    rmSync(this.storeDir, { recursive: true, force: true });
  }
}
