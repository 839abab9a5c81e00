import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { connect as tcpConnect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { findNatsServer, freePort, natsConfig, NATS_INSTALL_HINT, type NatsUser } from "@trias/bus";

/** How long a node may take to listen, and its JetStream to be ready, after it is spawned. */
const START_TIMEOUT_MS = 30_000;
/** How long a node gets to exit on SIGTERM before SIGKILL. */
const STOP_GRACE_MS = 5_000;

/** One nats-server of a test cluster: a child process with its own store and ports. */
export interface ClusterNode {
  readonly name: string;
  readonly port: number;
  readonly url: string;
  readonly running: boolean;
  /** The running process's id (undefined while stopped). */
  readonly pid: number | undefined;
}

/**
 * Three (or `size`) nats-server processes with JetStream, routed to each other on loopback
 * ports: what `trias setup --replicas 3` is for. Nodes can be killed and restarted with
 * their stores, one at a time, to move a stream's leader or lose quorum.
 */
export interface TestCluster {
  readonly nodes: readonly ClusterNode[];
  /** Every node's client URL, comma separated (what NATS_URL takes). */
  readonly urls: string;
  /** SIGKILL one node (no goodbye to its peers, as a crashed machine). */
  kill(name: string): Promise<void>;
  /** Start a stopped node again on the same ports and store. */
  start(name: string): Promise<void>;
  stop(): Promise<void>;
}

export interface TestClusterOptions {
  size?: number;
  users?: readonly NatsUser[];
  /** Each node's log goes to <logDir>/<name>.log (else it is discarded). */
  logDir?: string;
}

class Node implements ClusterNode {
  child: ChildProcess | null = null;
  constructor(
    readonly name: string,
    readonly port: number,
    readonly monitorPort: number,
    readonly confPath: string,
    readonly logFile: string | undefined,
  ) {}
  get url(): string {
    return `nats://127.0.0.1:${this.port}`;
  }
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
  get running(): boolean {
    return this.child !== null && this.child.exitCode === null && this.child.signalCode === null;
  }
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** The node's /healthz answers 200: it has joined the JetStream meta group and is current. */
async function healthy(n: Node): Promise<boolean> {
  try {
    const r = await fetch(`http://127.0.0.1:${n.monitorPort}/healthz`);
    return r.ok;
  } catch {
    return false;
  }
}

async function spawnNode(bin: string, n: Node): Promise<void> {
  const args = ["-c", n.confPath, ...(n.logFile ? ["-l", n.logFile] : [])];
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] });
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
  n.child = child;
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (!(await listening(n.port)) || !(await healthy(n))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`cluster node ${n.name} did not start: ${stderr.trim() || "no output"}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function stopNode(n: Node, signal: NodeJS.Signals): Promise<void> {
  const child = n.child;
  if (!child || !n.running) return;
  await new Promise<void>((resolve) => {
    const t = setTimeout(() => child.kill("SIGKILL"), STOP_GRACE_MS);
    child.once("exit", () => {
      clearTimeout(t);
      resolve();
    });
    child.kill(signal);
  });
  n.child = null;
}

/** Start a routed cluster of local nats-server processes; each node listens on loopback only. */
export async function startTestCluster(o: TestClusterOptions = {}): Promise<TestCluster> {
  const bin = findNatsServer();
  if (!bin) throw new Error(NATS_INSTALL_HINT);
  const size = o.size ?? 3;
  const dir = mkdtempSync(join(tmpdir(), "trias-cluster-"));
  const ports = await Promise.all(Array.from({ length: size }, () => freePort()));
  const routePorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const monitorPorts = await Promise.all(Array.from({ length: size }, () => freePort()));
  const nodes = ports.map((port, i) => {
    const name = `n${i + 1}`;
    const storeDir = join(dir, name);
    mkdirSync(storeDir, { recursive: true });
    const routes = routePorts
      .filter((_, j) => j !== i)
      .map((p) => `"nats-route://127.0.0.1:${p}"`)
      .join(", ");
    const conf = [
      natsConfig({
        port,
        storeDir,
        serverName: name,
        ...(o.users ? { users: o.users } : {}),
      }),
      `http: "127.0.0.1:${monitorPorts[i]}"`,
      `cluster {`,
      `  name: "trias-test"`,
      `  listen: "127.0.0.1:${routePorts[i]}"`,
      `  routes: [${routes}]`,
      `}`,
    ].join("\n");
    const confPath = join(dir, `${name}.conf`);
    writeFileSync(confPath, conf, { mode: 0o600 });
    return new Node(
      name,
      port,
      monitorPorts[i]!,
      confPath,
      o.logDir ? join(o.logDir, `${name}.log`) : undefined,
    );
  });
  try {
    await Promise.all(nodes.map((n) => spawnNode(bin, n)));
  } catch (e) {
    await Promise.all(nodes.map((n) => stopNode(n, "SIGKILL")));
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const byName = (name: string): Node => {
    const n = nodes.find((x) => x.name === name);
    if (!n)
      throw new Error(`no cluster node ${name}: nodes are ${nodes.map((x) => x.name).join(", ")}`);
    return n;
  };
  return {
    nodes,
    urls: nodes.map((n) => n.url).join(","),
    kill: (name) => stopNode(byName(name), "SIGKILL"),
    start: async (name) => {
      const n = byName(name);
      if (!n.running) await spawnNode(bin, n);
    },
    stop: async () => {
      await Promise.all(nodes.map((n) => stopNode(n, "SIGTERM")));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
