// The shipped docker-compose.yml, for real: the image built from deploy/Dockerfile, every
// agent in its own container with its own key volume and NATS user, tasks submitted from a
// container, an agent killed mid-run and restarted, nats stopped with runs in flight.
// Run by `pnpm test:containers` (scripts/test-containers.sh sets up the engine and the
// images first), never by `pnpm test`: it needs podman as root and takes minutes. With
// TRIAS_CT_CLUSTER=1 the same tests run the cluster profile on top (docker-compose.cluster.yml:
// three NATS servers at R3 and a second replica of each agent; docs/scaling.md).
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, natsConfig, type NatsUser, type NatsUserRole } from "@trias/bus";
import { ConsoleClient } from "@trias/console";
import { KeyRegistry, Signer, initKeyDir, keyFileName, REGISTRY_FILE } from "@trias/signing";
import { waitFor } from "@trias/testing";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";

const run = promisify(execFile);
const REPO = join(import.meta.dirname, "..", "..");
const PROJECT = "trias-ct";
const NETWORK = `${PROJECT}_default`;
const CLUSTER = process.env["TRIAS_CT_CLUSTER"] === "1";
const IDENTITIES = ["proposer", "router", "reviewer-1", "reviewer-2", "executor", "verifier"];
/** Each agent service and the identity it runs as (the cluster profile adds `<identity>-2`). */
const AGENTS: [service: string, identity: string][] = [
  ...IDENTITIES.map((i) => [i, i] as [string, string]),
  ...(CLUSTER ? IDENTITIES.map((i) => [`${i}-2`, i] as [string, string]) : []),
];
const NATS_SERVICES = CLUSTER ? ["nats", "nats-2", "nats-3"] : ["nats"];
/** Identity -> role of its NATS user: every identity the shipped nats.conf names. */
const IDENTITY_ROLES: Record<string, NatsUserRole> = {
  admin: "admin",
  proposer: "proposer",
  router: "router",
  "reviewer-1": "reviewer",
  "reviewer-2": "reviewer",
  "reviewer-3": "reviewer",
  executor: "executor",
  verifier: "verifier",
  console: "console",
  "human-operator": "human",
};
const TRANSFER = JSON.stringify({ from: "alice", to: "bob", amount: 1 });
const ALICE_START = 1000;

// Under the script's state dir when it gives one, so its cleanup removes what a killed run left.
const dir = mkdtempSync(join(process.env["TRIAS_CT_DIR"] ?? tmpdir(), "trias-ct-"));
const passwords = Object.fromEntries(
  Object.keys(IDENTITY_ROLES).map((id) => [id, `${id}-${Math.random().toString(36).slice(2)}`]),
);
const envName = (id: string) => `${id.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_PASSWORD`;
let natsPort = 0;
let uiPort = 0;
let admin: Bus | undefined;

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

async function sh(cmd: string, args: string[], timeoutMs = 300_000): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, {
      cwd: REPO,
      timeout: timeoutMs,
      maxBuffer: 32 * 1024 * 1024,
    });
    return stdout;
  } catch (e) {
    const err = e as { stdout?: string; stderr?: string; message: string };
    throw new Error(
      `${cmd} ${args.join(" ")} failed: ${err.message}\n${err.stdout ?? ""}${err.stderr ?? ""}`,
    );
  }
}

const compose = (...args: string[]) =>
  sh("docker-compose", [
    "-p",
    PROJECT,
    "--project-directory",
    dir,
    "-f",
    join(REPO, "docker-compose.yml"),
    ...(CLUSTER ? ["-f", join(REPO, "docker-compose.cluster.yml")] : []),
    "-f",
    join(dir, "compose.test.yml"),
    "--env-file",
    join(dir, ".env"),
    ...args,
  ]);

const container = (service: string) => `${PROJECT}_${service}_1`;

/** The console's CLI in a container of its own on the stack's network (compose run cannot link on podman). */
async function consoleRun(script: string): Promise<string> {
  return sh("podman", [
    "run",
    "--rm",
    "--network",
    NETWORK,
    "-v",
    `${PROJECT}_key-console:/keys:ro`,
    "-e",
    "NATS_URL=nats://nats:4222",
    "-e",
    "NATS_USER=console",
    "-e",
    `NATS_PASSWORD=${passwords["console"]}`,
    "-e",
    "TRIAS_KEY_DIR=/keys",
    "--entrypoint",
    "sh",
    "trias:latest",
    "-c",
    script,
  ]);
}

const CLI = "node agents/console/dist/cli.js";

/** Submit `n` transfers from one console container; returns their run ids once each is accepted. */
async function submit(n: number): Promise<string[]> {
  const out = await consoleRun(
    `for i in $(seq 1 ${n}); do ${CLI} submit transfer '${TRANSFER}' || exit 1; done`,
  );
  const runs = [...out.matchAll(/^submitted (\S+)$/gm)].map((m) => m[1]!);
  expect(runs).toHaveLength(n);
  return runs;
}

/** `trias audit` of each run in one console container: how many said OK (a failure exits). */
async function auditOk(runs: readonly string[]): Promise<number> {
  const out = await consoleRun(`for r in ${runs.join(" ")}; do ${CLI} audit $r || exit 1; done`);
  return [...out.matchAll(/^audit: OK/gm)].length;
}

async function connectAdmin(): Promise<Bus> {
  return Bus.connect({
    servers: `nats://127.0.0.1:${natsPort}`,
    name: "containers-test",
    user: "admin",
    pass: passwords["admin"]!,
    connectTimeoutMs: 30_000,
  });
}

/** Wait until every run has closed; returns each run's outcome. */
async function outcomes(runs: readonly string[], timeoutMs = 180_000): Promise<string[]> {
  const bus = (admin ??= await connectAdmin());
  const keys = join(dir, ".trias", "keys");
  const client = new ConsoleClient(
    bus,
    Signer.load(join(keys, keyFileName("console"))),
    KeyRegistry.load(join(keys, REGISTRY_FILE)),
  );
  const closed = await client.waitForClose(runs, timeoutMs);
  return runs.map((r) => closed.get(r)?.body.outcome ?? "open");
}

async function aliceBalance(): Promise<number> {
  const bus = (admin ??= await connectAdmin());
  const { state } = await new Ledger(await bus.kv(LEDGER_BUCKET)).read();
  return state.accounts["alice"]!.balance;
}

async function health(name: string): Promise<string> {
  return (await sh("podman", ["inspect", "--format", "{{.State.Health.Status}}", name])).trim();
}

beforeAll(async () => {
  natsPort = await freePort();
  uiPort = await freePort();
  const keys = join(dir, ".trias", "keys");
  await initKeyDir(keys);
  const users: NatsUser[] = Object.entries(IDENTITY_ROLES).map(([user, role]) => ({
    user,
    password: passwords[user]!,
    role,
  }));
  writeFileSync(
    join(dir, "nats.conf"),
    natsConfig({ host: "0.0.0.0", port: 4222, storeDir: "/data/jetstream", users }),
  );
  writeFileSync(
    join(dir, ".env"),
    [
      ...Object.keys(IDENTITY_ROLES).map((id) => `${envName(id)}=${passwords[id]}`),
      `TRIAS_NATS_PORT=${natsPort}`,
      `TRIAS_JAEGER_UI_PORT=${uiPort}`,
      "",
    ].join("\n"),
  );
  // The server config is generated here as `trias nats-config` does, with this test's
  // passwords; the ack wait is set a little longer than the default for a loaded machine.
  const ackWait = Object.fromEntries(
    AGENTS.map(([a]) => [a, { environment: { TRIAS_ACK_WAIT_MS: "5000" } }]),
  );
  const natsConf = Object.fromEntries(
    NATS_SERVICES.map((n) => [n, { volumes: ["./nats.conf:/etc/nats/nats.conf:ro"] }]),
  );
  writeFileSync(
    join(dir, "compose.test.yml"),
    JSON.stringify({ services: { ...natsConf, ...ackWait } }),
  );
  await compose("up", "-d");
  for (const name of [...NATS_SERVICES, ...AGENTS.map(([a]) => a)].map(container))
    await waitFor(
      `${name} healthy`,
      async () => ((await health(name)) === "healthy" ? true : undefined),
      180_000,
      1000,
    );
}, 400_000);

afterAll(async () => {
  await admin?.drain().catch(() => undefined);
  await compose("down", "-v", "--remove-orphans").catch((e) => console.error(String(e)));
  rmSync(dir, { recursive: true, force: true });
}, 120_000);

describe("the compose stack in containers", () => {
  let submitted = 0;

  it("runs the setup job, gives each agent only its own key, readable by the image's user", async () => {
    const setup = await sh("podman", [
      "inspect",
      "--format",
      "{{.State.ExitCode}}",
      container("setup"),
    ]);
    expect(setup.trim()).toBe("0");
    for (const [service, agent] of AGENTS) {
      const listing = await sh("podman", [
        "exec",
        container(service),
        "sh",
        "-c",
        "id -un; ls /keys; cat /keys/*.key.json >/dev/null && echo readable",
      ]);
      const [user, ...rest] = listing.trim().split("\n");
      expect(user).toBe("node");
      expect(rest.pop()).toBe("readable");
      expect(rest.sort()).toEqual([`${agent}.key.json`, REGISTRY_FILE].sort());
    }
  });

  it("completes a task submitted from a container, and its trace audits clean", async () => {
    const out = await consoleRun(`${CLI} submit transfer '${TRANSFER}' --wait`);
    const runId = /^submitted (\S+)$/m.exec(out)?.[1];
    expect(runId).toBeDefined();
    submitted += 1;
    expect(await outcomes([runId!])).toEqual(["completed"]);
    const audit = await consoleRun(`${CLI} audit ${runId}`);
    expect(audit).toMatch(/^audit: OK/m);
    expect(await aliceBalance()).toBe(ALICE_START - submitted);
  });

  it("an executor killed mid-run and restarted: every run completes, each effect exactly once", async () => {
    const before = await aliceBalance();
    // Submitted one after another from one container while the executor is killed as soon
    // as the first has taken effect: later runs are in flight or accepted and waiting.
    const submitting = submit(12);
    await waitFor(
      "a first run of the batch to take effect",
      async () => ((await aliceBalance()) < before ? true : undefined),
      120_000,
      100,
    );
    await sh("podman", ["kill", container("executor")]);
    await sh("podman", ["start", container("executor")]);
    const runs = await submitting;
    submitted += runs.length;
    expect(await outcomes(runs)).toEqual(runs.map(() => "completed"));
    expect(await aliceBalance()).toBe(ALICE_START - submitted);
    expect(await auditOk(runs)).toBe(runs.length);
  });

  it("nats stopped with accepted runs in flight (one node of the cluster profile's three): none is lost once it is back", async () => {
    const runs = await submit(6);
    submitted += runs.length;
    await admin?.drain();
    admin = undefined;
    await compose("stop", "nats");
    await compose("start", "nats");
    await waitFor(
      "nats healthy",
      async () => ((await health(container("nats"))) === "healthy" ? true : undefined),
      120_000,
      1000,
    );
    expect(await outcomes(runs)).toEqual(runs.map(() => "completed"));
    expect(await aliceBalance()).toBe(ALICE_START - submitted);
    expect(await auditOk(runs)).toBe(runs.length);
  });

  it("every identity runs as its replicas, each holding a share of the runs' partitions", async () => {
    const want = CLUSTER ? { "1": 8, "2": 8 } : { "1": 16 };
    // After the kills above, a share may still be on its way back to a restarted replica.
    const rows = await waitFor(
      "each identity's partitions held by its replicas",
      async () => {
        const out = await consoleRun(`${CLI} replicas --json`);
        const rows = JSON.parse(out) as { identity: string; partitions: Record<string, number> }[];
        return rows.length === IDENTITIES.length &&
          rows.every((r) => JSON.stringify(r.partitions) === JSON.stringify(want))
          ? rows
          : undefined;
      },
      60_000,
      2000,
    );
    expect(rows.map((r) => r.identity).sort()).toEqual([...IDENTITIES].sort());
  });

  it("every agent's spans reach the trace receiver named in compose", async () => {
    const services = await waitFor(
      "spans of every agent",
      async () => {
        const r = await fetch(`http://127.0.0.1:${uiPort}/api/services`);
        const { data } = (await r.json()) as { data: string[] };
        const want = [
          "trias-proposer",
          "trias-router",
          "trias-reviewer",
          "trias-executor",
          "trias-verifier",
        ];
        return want.every((s) => data.includes(s)) ? data : undefined;
      },
      60_000,
      1000,
    );
    expect(services).toContain("trias-executor");
  });
});
