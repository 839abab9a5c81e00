import { existsSync, mkdirSync, unwatchFile, watchFile } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import {
  ADMIN_USER,
  Bus,
  LocalNatsServer,
  firstReplicaDurables,
  replicaDurable,
  type NatsUser,
} from "@trias/bus";
import { TransientError, ValidationError } from "@trias/protocol";
import {
  initKeyDir,
  natsCredentialsFileName,
  readJwks,
  readNatsCredentials,
  REGISTRY_FILE,
  type Identity,
} from "@trias/signing";
import { SHIPPED_POLICY_DIR } from "@trias/policy";
import { Supervisor } from "@trias/supervise";
import { setupTrace } from "./setup.js";

export const REPO_ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..", "..");

/**
 * Node flags for agent processes. An agent's live heap is small (about 35 MB after 24,000
 * steps, from heap snapshots) but V8 lets the old generation grow far past it on a machine
 * with memory to spare: RSS reached 230 MB. A small young generation and an old-generation
 * ceiling keep each agent under 150 MB RSS (pnpm bench --memory); every cache an agent holds
 * is bounded to fit well inside it.
 */
export const AGENT_NODE_FLAGS = [
  "--enable-source-maps",
  "--max-semi-space-size=2",
  "--max-old-space-size=128",
];

/**
 * The agent flags, less any that NODE_OPTIONS sets itself: flags on the command line win over
 * NODE_OPTIONS, so without this an operator's (or `pnpm bench --node-options`) heap setting
 * would be silently ignored.
 */
export function agentNodeFlags(nodeOptions = ""): string[] {
  const given = new Set(nodeOptions.split(/\s+/).map((f) => f.split("=")[0]));
  return AGENT_NODE_FLAGS.filter((f) => !given.has(f.split("=")[0]));
}

export type AgentRole = "proposer" | "router" | "reviewer" | "executor" | "verifier";

export interface AgentSpec {
  name: string;
  role: AgentRole;
  /** Environment for this agent only (e.g. TRIAS_REVIEWER_STRATEGY=llm). */
  env?: Record<string, string>;
  /**
   * Which replica of the identity this process is (TRIAS_REPLICA; docs/scaling.md, section 2).
   * @default 1
   */
  replica?: number;
}

/** The process's name in the stack (kill, restart, its log file): `<identity>#<n>` past the first replica. */
export function processName(a: AgentSpec): string {
  return (a.replica ?? 1) > 1 ? `${a.name}#${a.replica}` : a.name;
}

export function defaultAgents(reviewers = 2): AgentSpec[] {
  return [
    { name: "proposer", role: "proposer" },
    { name: "router", role: "router" },
    ...Array.from({ length: reviewers }, (_, i) => ({
      name: `reviewer-${i + 1}`,
      role: "reviewer" as const,
    })),
    { name: "executor", role: "executor" },
    { name: "verifier", role: "verifier" },
  ];
}

/**
 * The durable consumers each agent creates; the stack is ready when all exist. The same list
 * the NATS permissions grant (nats-config.ts), so an agent that named another is refused.
 */
export function durablesOf(a: AgentSpec): string[] {
  return firstReplicaDurables({ user: a.name, role: a.role }).map((d) =>
    replicaDurable(d, String(a.replica ?? 1)),
  );
}

export interface StackOptions {
  /** Use this server instead of starting one. */
  natsUrl?: string;
  /** One user for every agent on that server (else each identity's credentials file). */
  natsUser?: string;
  natsPass?: string;
  /** Where keys live; created with one key per identity when missing. */
  keyDir: string;
  /** Where each agent's log goes. */
  logDir: string;
  environment?: string;
  policyFile?: string;
  agents?: AgentSpec[];
  /** Extra environment for every agent (e.g. OTEL_*, LOG_LEVEL). */
  env?: Record<string, string>;
  /** JetStream store dir for an embedded server (temp when absent). */
  storeDir?: string;
  /** Seed the demo ledger accounts. */
  seedLedger?: boolean;
  /** Replicas of the trace stream and buckets (3 on a 3-node cluster). @default 1 */
  replicas?: number;
  /**
   * How long the agents may take to be ready. Agents that list MCP servers' tools at start
   * take longer on a loaded machine.
   * @default 30000
   */
  readyTimeoutMs?: number;
  /** Start the server (tests pass the testcontainers-or-binary harness); the local binary by default. */
  natsFactory?: (users: readonly NatsUser[]) => Promise<NatsHandle>;
}

/**
 * How long a configuration reload may take before every new user can connect.
 * @default 10_000 ms
 */
const RELOAD_TIMEOUT_MS = 10_000;

/**
 * How often `followRegistry` looks at the registry file for a change.
 * @default 500 ms
 */
const REGISTRY_POLL_MS = 500;

/** A server the stack started and owns. */
export interface NatsHandle {
  url: string;
  restart(): Promise<void>;
  stop(): Promise<void>;
  /** Serve these users from now on, by a configuration reload (no restart); absent: cannot. */
  reload?(users: readonly NatsUser[]): void | Promise<void>;
}

/**
 * A whole Trias deployment on one machine: an embedded nats-server (unless one is given),
 * keys, the trace stream and buckets, and every agent as its own OS process.
 */
export class Stack {
  readonly opts: StackOptions;
  readonly server: NatsHandle | null;
  readonly natsUrl: string;
  readonly admin: Bus;
  /** Each identity's NATS user (and the admin's), by name. */
  #users: Map<string, NatsUser>;
  #unfollow: () => void = () => undefined;
  /** Every agent process; stopping the stack stops each one (docs/cli.md, "signals"). */
  readonly #agents = new Supervisor();

  private constructor(
    opts: StackOptions,
    server: NatsHandle | null,
    natsUrl: string,
    admin: Bus,
    users: Map<string, NatsUser>,
  ) {
    this.opts = opts;
    this.server = server;
    this.natsUrl = natsUrl;
    this.admin = admin;
    this.#users = users;
  }

  static async start(opts: StackOptions): Promise<Stack> {
    const agents = opts.agents ?? defaultAgents();
    const identities: Identity[] = [
      ...agents
        .filter((a, i) => agents.findIndex((b) => b.name === a.name) === i)
        .map((a) => ({ name: a.name, role: a.role })),
      { name: "console", role: "console" },
      { name: "human-operator", role: "human" },
    ];
    await initKeyDir(opts.keyDir, identities);
    mkdirSync(opts.logDir, { recursive: true });
    const users = identityUsers(opts.keyDir);

    let server: NatsHandle | null = null;
    let url = opts.natsUrl;
    if (!url) {
      // The configuration deploy/nats/nats.conf ships, over this stack's identities.
      server = opts.natsFactory
        ? await opts.natsFactory([...users.values()])
        : await LocalNatsServer.start({
            users: [...users.values()],
            logFile: join(opts.logDir, "nats-server.log"),
            ...(opts.storeDir ? { storeDir: opts.storeDir } : {}),
          });
      url = server.url;
    }
    const adminUser = users.get(ADMIN_USER);
    const admin = await Bus.connect({
      servers: url,
      name: "trias-admin",
      ...(opts.natsUser !== undefined && server === null
        ? { user: opts.natsUser, ...(opts.natsPass !== undefined ? { pass: opts.natsPass } : {}) }
        : adminUser
          ? { user: adminUser.user, pass: adminUser.password }
          : {}),
    });
    await setupTrace(admin, {
      seedLedger: opts.seedLedger ?? true,
      ...(opts.replicas ? { replicas: opts.replicas } : {}),
    });

    const stack = new Stack({ ...opts, agents }, server, url, admin, users);
    for (const a of agents) stack.spawnAgent(a);
    await stack.waitReady(opts.readyTimeoutMs);
    return stack;
  }

  agentEnv(a: AgentSpec): Record<string, string> {
    const user = this.#users.get(a.name);
    const env: Record<string, string> = {
      ...(process.env as Record<string, string>),
      NATS_URL: this.natsUrl,
      TRIAS_IDENTITY: a.name,
      TRIAS_KEY_DIR: this.opts.keyDir,
      TRIAS_ENV: this.opts.environment ?? "dev",
      ...(this.opts.policyFile
        ? { TRIAS_POLICY: this.opts.policyFile }
        : { TRIAS_POLICY_DIR: SHIPPED_POLICY_DIR }),
      ...(this.opts.env ?? {}),
    };
    if (this.opts.natsUser !== undefined && this.server === null) {
      env["NATS_USER"] = this.opts.natsUser;
      if (this.opts.natsPass !== undefined) env["NATS_PASSWORD"] = this.opts.natsPass;
    } else if (user) {
      env["NATS_USER"] = user.user;
      env["NATS_PASSWORD"] = user.password;
    }
    return env;
  }

  /** Start one agent process (again, after a kill), with extra environment if given. */
  spawnAgent(a: AgentSpec, extraEnv: Record<string, string> = {}): void {
    const main = join(REPO_ROOT, "agents", a.role, "dist", "main.js");
    if (!existsSync(main))
      throw new TransientError("internal", `${main} is missing: run \`pnpm build\` first`);
    const env: Record<string, string> = {
      ...this.agentEnv(a),
      ...(a.replica !== undefined ? { TRIAS_REPLICA: String(a.replica) } : {}),
      ...(a.env ?? {}),
      ...extraEnv,
    };
    const name = processName(a);
    this.#agents.spawn(name, process.execPath, [...agentNodeFlags(env["NODE_OPTIONS"]), main], {
      env,
      cwd: REPO_ROOT,
      logFile: join(this.opts.logDir, `${name}.log`),
    });
  }

  pid(name: string): number | undefined {
    return this.#agents.get(name)?.pid;
  }

  /** Kill an agent abruptly (no drain), as a crash would. */
  async kill(name: string, signal: NodeJS.Signals = "SIGKILL"): Promise<void> {
    await this.#agents.stop(name, signal);
  }

  /** Kill an agent and start it again (with extra environment, e.g. a TRIAS_FAULT to arm). */
  async restart(name: string, extraEnv: Record<string, string> = {}): Promise<void> {
    const spec = (this.opts.agents ?? []).find((a) => processName(a) === name);
    if (!spec) throw new Error(`no agent named ${name}`);
    await this.kill(name);
    this.spawnAgent(spec, extraEnv);
  }

  /** Kill every agent at once, as a power cut would (no drain). */
  async killAll(): Promise<void> {
    await Promise.all(this.#agents.names().map((n) => this.kill(n)));
  }

  /** Start every configured agent that is not running, and wait until they are ready. */
  async startAll(): Promise<void> {
    for (const a of this.opts.agents ?? [])
      if (!this.#agents.has(processName(a))) this.spawnAgent(a);
    await this.waitReady();
  }

  /** Resolves with the exit code when the agent's process ends (a crash, or a fault point). */
  async exited(name: string): Promise<number | null> {
    const r = this.#agents.get(name);
    if (!r) return null;
    return (await r.exited).code;
  }

  async waitReady(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const wanted = (this.opts.agents ?? []).flatMap(durablesOf);
    for (;;) {
      const missing: string[] = [];
      for (const d of wanted) {
        if (!(await this.admin.consumerInfo(d).catch(() => null))) missing.push(d);
      }
      const dead = this.#agents
        .names()
        .flatMap((n) => this.#agents.get(n) ?? [])
        .filter((r) => r.child.exitCode !== null);
      if (dead.length > 0) {
        throw new TransientError(
          "internal",
          `agent(s) exited during start: ${dead.map((r) => `${r.name} (code ${r.child.exitCode}, see ${join(this.opts.logDir, r.name + ".log")})`).join(", ")}`,
        );
      }
      if (missing.length === 0) return;
      if (Date.now() > deadline)
        throw new TransientError(
          "timeout",
          `agents not ready after ${timeoutMs} ms; missing consumers: ${missing.join(", ")}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** SIGTERM every agent (they drain; SIGKILL after the grace period), then stop the embedded server. */
  async stop(): Promise<void> {
    this.#unfollow();
    await this.#agents.stopAll("SIGTERM");
    await this.admin.drain();
    await this.server?.stop();
  }

  /**
   * Give identities registered since the stack started (a person added with `trias keys
   * add-human`, which writes their credentials) their own NATS user: the embedded server
   * reloads its configuration, and this resolves once each new user can connect. Returns
   * the names added. A server the stack does not own is reconfigured by its operator
   * (docs/operations.md, "A person's NATS user").
   */
  async reloadNatsUsers(timeoutMs = RELOAD_TIMEOUT_MS): Promise<string[]> {
    const users = identityUsers(this.opts.keyDir);
    const added = [...users.keys()].filter((n) => !this.#users.has(n));
    if (added.length === 0) return [];
    if (!this.server?.reload)
      throw new ValidationError(
        "config_invalid",
        "this stack's NATS server is not one it started: regenerate its configuration with `trias nats-config --key-dir <dir>` and reload the server",
      );
    await this.server.reload([...users.values()]);
    this.#users = users;
    const deadline = Date.now() + timeoutMs;
    for (const name of added) {
      const u = users.get(name)!;
      for (;;) {
        try {
          const bus = await Bus.connect({
            servers: this.natsUrl,
            name: `trias-reload-check-${name}`,
            user: u.user,
            pass: u.password,
            connectTimeoutMs: 1_000,
          });
          await bus.drain();
          break;
        } catch (e) {
          if (Date.now() > deadline)
            throw new TransientError(
              "timeout",
              `the NATS server did not take user ${name} within ${timeoutMs} ms`,
              { cause: e },
            );
          await new Promise((r) => setTimeout(r, 50));
        }
      }
    }
    return added;
  }

  /**
   * Reload the embedded server's users whenever the registry changes (a person added with
   * `trias keys add-human` while the stack runs): `added` hears the new names, `failed` why
   * a reload did not happen. Stops with the stack.
   */
  followRegistry(added: (names: string[]) => void, failed: (e: unknown) => void): void {
    let chain = Promise.resolve();
    watchFile(this.registryFile, { interval: REGISTRY_POLL_MS, persistent: false }, () => {
      // One reload at a time, in the order the changes came.
      chain = chain.then(async () => {
        try {
          const names = await this.reloadNatsUsers();
          if (names.length > 0) added(names);
        } catch (e) {
          failed(e);
        }
      });
    });
    this.#unfollow = () => unwatchFile(this.registryFile);
  }

  /** An identity's NATS credentials, or the admin's (tests use these to act as that identity). */
  natsCredentials(name: string): { user?: string; pass?: string } {
    const u = this.#users.get(name);
    return u ? { user: u.user, pass: u.password } : {};
  }

  /** Every NATS user of this stack's server (the admin's and each identity's). */
  get natsUsers(): NatsUser[] {
    return [...this.#users.values()];
  }

  get registryFile(): string {
    return join(this.opts.keyDir, REGISTRY_FILE);
  }
}

/**
 * The admin and every identity in the key dir's registry, each with its credentials file. A
 * revoked key keeps its user: revoking refuses the key's signatures; removing the identity's
 * NATS access is the operator's separate act (a new configuration).
 */
function identityUsers(keyDir: string): Map<string, NatsUser> {
  const users = new Map<string, NatsUser>();
  const creds = (name: string) => readNatsCredentials(join(keyDir, natsCredentialsFileName(name)));
  users.set(ADMIN_USER, { user: ADMIN_USER, password: creds(ADMIN_USER).password, role: "admin" });
  for (const k of readJwks(join(keyDir, REGISTRY_FILE)).keys) {
    // An identity created before credentials existed gets them from `trias keys init`.
    if (users.has(k.name) || !existsSync(join(keyDir, natsCredentialsFileName(k.name)))) continue;
    users.set(k.name, { user: k.name, password: creds(k.name).password, role: k.role });
  }
  return users;
}
