import { spawn } from "node:child_process";
import { copyFileSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AckPolicy, JetStreamApiError, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import {
  LEASES_BUCKET,
  durablesOf,
  firstReplicaDurables,
  inboxPrefixOf,
  isPermissionError,
  type NatsUser,
} from "@trias/bus";
import { STREAM_NAME, assignmentFilter } from "@trias/protocol";
import { REGISTRY_FILE, keyFileName, natsCredentialsFileName } from "@trias/signing";
import { waitFor } from "@trias/testing";
import { REPO, consumerOf, startHarness, type Harness } from "./helpers/harness.js";

/** A raw NATS client with one identity's real credentials: the attacker's hand. */
async function rawAs(h: Harness, u: NatsUser): Promise<NatsConnection> {
  return connect({
    servers: h.stack.natsUrl,
    user: u.user,
    pass: u.password,
    inboxPrefix: inboxPrefixOf(u.user),
  });
}

/** A subject each durable filters on (another identity's durable would be created on it). */
function filterOf(durable: string): string {
  if (durable.startsWith("reviewer-")) return assignmentFilter("review");
  if (durable.startsWith("executor-")) return "trias.*.verdict.*";
  if (durable.startsWith("proposer-")) return "trias.console.task_submitted.*";
  if (durable === "router") return "trias.proposer.step_proposed.*";
  return "trias.>";
}

/** The trias CLI in its own process, with a key dir and no NATS_USER: as the identity it acts as. */
async function cli(
  h: Harness,
  keyDir: string,
  args: string[],
  until?: (out: string) => boolean,
): Promise<{ code: number | null; out: string }> {
  const env: Record<string, string | undefined> = {
    ...process.env,
    NATS_URL: h.stack.natsUrl,
    TRIAS_KEY_DIR: keyDir,
  };
  delete env["NATS_USER"];
  delete env["NATS_PASSWORD"];
  const child = spawn(
    process.execPath,
    [join(REPO, "agents", "console", "dist", "cli.js"), ...args],
    { env },
  );
  let out = "";
  const onData = (d: Buffer) => {
    out += d.toString();
    if (until?.(out)) child.kill("SIGINT");
  };
  child.stdout.on("data", onData);
  child.stderr.on("data", onData);
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, out };
}

describe("credentials", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it("credentials - no identity's user can delete, take over, pull, ack or create a durable of another, nor publish as another role", async () => {
    const users = h.stack.natsUsers.filter((u) => u.role !== "admin");
    expect(users.map((u) => u.user).sort()).toEqual(
      [
        "console",
        "executor",
        "human-operator",
        "proposer",
        "reviewer-1",
        "reviewer-2",
        "reviewer-3",
        "router",
        "verifier",
      ].sort(),
    );
    const before = new Map<string, string>();
    // Every durable any identity may have (each replica's: docs/scaling.md, section 2); those
    // of the first replicas exist, the others must not be creatable by anyone else either.
    const all = [...new Set(users.flatMap(durablesOf))];
    for (const d of [...new Set(users.flatMap(firstReplicaDurables))].filter(
      (d) => d !== "reviewer-reviewer-3",
    ))
      before.set(d, (await consumerOf(h, d)).created);

    let attempts = 0;
    let succeeded = 0;
    const refused = new Map<string, number>();
    const attempt = async (what: string, p: Promise<unknown>): Promise<void> => {
      attempts++;
      try {
        await p;
        succeeded++;
        throw new Error(`${what} succeeded`);
      } catch (e) {
        const code = isPermissionError(e)
          ? "permission"
          : e instanceof JetStreamApiError
            ? `api ${e.code}`
            : null;
        if (code === null) throw e;
        refused.set(code, (refused.get(code) ?? 0) + 1);
      }
    };

    for (const u of users) {
      const nc = await rawAs(h, u);
      try {
        const jsm = await jetstreamManager(nc, { checkAPI: false });
        const js = jetstream(nc, { checkAPI: false });
        const mine = new Set(durablesOf(u));
        for (const d of all.filter((x) => !mine.has(x))) {
          await attempt(`${u.user} deletes ${d}`, jsm.consumers.delete(STREAM_NAME, d));
          await attempt(
            `${u.user} recreates ${d} on its own terms`,
            jsm.consumers.add(STREAM_NAME, {
              durable_name: d,
              ack_policy: AckPolicy.Explicit,
              filter_subject: filterOf(d),
            }),
          );
          await attempt(
            `${u.user} pulls from ${d}`,
            nc.request(`$JS.API.CONSUMER.MSG.NEXT.${STREAM_NAME}.${d}`, '{"batch":1}', {
              timeout: 2_000,
            }),
          );
          await attempt(
            `${u.user} acks on ${d}`,
            nc.request(`$JS.ACK.${STREAM_NAME}.${d}.1.1.1.1.0`, "+TERM", { timeout: 2_000 }),
          );
        }
        // A new durable of its own choosing on another role's subjects, by each create API.
        const hijack = `${u.user}-hijack`;
        await attempt(
          `${u.user} creates a durable on the verdicts`,
          jsm.consumers.add(STREAM_NAME, {
            durable_name: hijack,
            ack_policy: AckPolicy.Explicit,
            filter_subject: "trias.*.verdict.*",
          }),
        );
        await attempt(
          `${u.user} creates a durable through the legacy subject`,
          nc
            .request(
              `$JS.API.CONSUMER.DURABLE.CREATE.${STREAM_NAME}.${hijack}`,
              JSON.stringify({
                stream_name: STREAM_NAME,
                config: { durable_name: hijack, ack_policy: "explicit" },
              }),
              { timeout: 2_000 },
            )
            .then((m) => m.json()),
        );
        // The ephemeral create subject (open for reads) refuses a durable name: the server's code.
        const r = await nc.request(
          `$JS.API.CONSUMER.CREATE.${STREAM_NAME}`,
          JSON.stringify({
            stream_name: STREAM_NAME,
            config: { durable_name: hijack, ack_policy: "explicit", filter_subject: "trias.>" },
          }),
          { timeout: 2_000 },
        );
        const body = r.json<{ error?: { err_code: number } }>();
        attempts++;
        if (body.error)
          refused.set(
            `api ${body.error.err_code}`,
            1 + (refused.get(`api ${body.error.err_code}`) ?? 0),
          );
        else succeeded++;
        // Publishing as another role.
        for (const role of ["proposer", "router", "reviewer", "executor", "verifier", "human"]) {
          if (role === u.role) continue;
          await attempt(
            `${u.user} publishes as ${role}`,
            js.publish(`trias.${role}.verdict.attack`, new Uint8Array([1]), { timeout: 2_000 }),
          );
        }
        // Another identity's partition leases (docs/scaling.md, section 2).
        for (const other of users) {
          if (other.user === u.user || durablesOf(other).length === 0) continue;
          await attempt(
            `${u.user} writes ${other.user}'s partition leases`,
            js.publish(`$KV.${LEASES_BUCKET}.${other.user}`, new Uint8Array([1]), {
              timeout: 2_000,
            }),
          );
        }
        // Reading is allowed to every identity: the trace is the shared record.
        const own = await jsm.consumers.add(STREAM_NAME, { ack_policy: AckPolicy.None });
        expect(own.name).not.toBe("");
      } finally {
        await nc.close();
      }
    }
    expect(succeeded).toBe(0);
    expect(attempts).toBe(1537);
    // Every refusal was the server's, known by its code: a permission violation, or the
    // ephemeral create subject's refusal of a durable name.
    expect([...refused.keys()].every((k) => k === "permission" || k.startsWith("api "))).toBe(true);
    expect(refused.get("permission")).toBeGreaterThan(300);
    // Nothing changed: every durable is still the one its agent made.
    for (const [d, created] of before) expect((await consumerOf(h, d)).created).toBe(created);
    for (const u of users) expect(await h.bus.consumerInfo(`${u.user}-hijack`)).toBeNull();
  });

  it("credentials - a user may subscribe to its own inbox only", async () => {
    const proposer = h.stack.natsUsers.find((u) => u.user === "proposer");
    expect(proposer).toBeDefined();
    const nc = await rawAs(h, proposer as NatsUser);
    try {
      for (const subject of ["trias.>", `${inboxPrefixOf("executor")}.>`, "$JS.ACK.>"]) {
        const sub = nc.subscribe(subject);
        const err = await sub.closed;
        expect(isPermissionError(err), subject).toBe(true);
      }
    } finally {
      await nc.close();
    }
  });

  it("credentials - the operator CLI submits, watches and audits as the console, with no admin credentials at hand", async () => {
    // A key dir holding only what an operator's console has: the registry, its key, its user.
    const dir = mkdtempSync(join(tmpdir(), "trias-console-"));
    for (const f of [REGISTRY_FILE, keyFileName("console"), natsCredentialsFileName("console")])
      copyFileSync(join(h.keyDir, f), join(dir, f));
    const submitted = await cli(h, dir, [
      "submit",
      "transfer",
      '{"from":"alice","to":"bob","amount":3}',
      "--wait",
    ]);
    expect(submitted.out).toMatch(/submitted (\S+)/);
    expect(submitted.code, submitted.out).toBe(0);
    const run = /submitted (\S+)/.exec(submitted.out)?.[1] ?? "";
    const audited = await cli(h, dir, ["audit", run]);
    expect(audited.code, audited.out).toBe(0);
    // Every run and the receipts' checkpoint chain (the receipts bucket's keys, read by the console).
    const all = await cli(h, dir, ["audit", "--all", "--json"]);
    expect(all.out).not.toMatch(/Permissions Violation|permission/i);
    expect(all.code, all.out).toBe(0);
    const watched = await cli(h, dir, ["watch", run], (out) => out.includes("closed"));
    expect(watched.out).toContain(run);
    expect(watched.out).toMatch(/closed/);
    // And the console's user is refused what only the admin may do.
    const setup = await cli(h, dir, ["setup"]);
    expect(setup.code).not.toBe(0);
  });

  it("credentials - a consumer squatting a durable's name before it exists is replaced by the durable's owner", async () => {
    // nats-server 2.9 lets the ephemeral create subject carry a name: take reviewer-3's.
    const console_ = h.stack.natsUsers.find((u) => u.user === "console") as NatsUser;
    const nc = await rawAs(h, console_);
    // Where the server refuses the name (a later version may), there is nothing to replace.
    let squatted = false;
    try {
      const r = await nc.request(
        `$JS.API.CONSUMER.CREATE.${STREAM_NAME}`,
        JSON.stringify({
          stream_name: STREAM_NAME,
          config: {
            name: "reviewer-reviewer-3",
            ack_policy: "none",
            filter_subject: "trias.console.>",
            inactive_threshold: 3_600_000_000_000,
          },
        }),
        { timeout: 2_000 },
      );
      squatted = r.json<{ error?: unknown }>().error === undefined;
    } finally {
      await nc.close();
    }
    h.stack.spawnAgent({ name: "reviewer-3", role: "reviewer" });
    try {
      const info = await waitFor(
        "reviewer-3's durable",
        async () => {
          const i = await h.bus.consumerInfo("reviewer-reviewer-3");
          return i?.config.durable_name === "reviewer-reviewer-3" ? i : undefined;
        },
        20_000,
      );
      expect(info.config.filter_subject).toBe(assignmentFilter("review"));
      const log = join(h.stack.opts.logDir, "reviewer-3.log");
      if (squatted)
        await waitFor("reviewer-3 to report the name it took back", () =>
          /was not this agent's durable held its name/.test(readFileSync(log, "utf8"))
            ? true
            : undefined,
        );
    } finally {
      await h.stack.kill("reviewer-3");
    }
  });

  it("credentials - the executor recreates its deleted verdicts durable, says so, and a reviewed step still completes", async () => {
    const log = join(h.stack.opts.logDir, "executor.log");
    const created = (await consumerOf(h, "executor-verdicts")).created;
    // nats-server 2.9 may answer a delete of a busy consumer with a store error after
    // removing it: ask again until the one the executor made is gone.
    await waitFor(
      "executor-verdicts to be deleted and the executor to recreate it",
      async () => {
        const info = await h.bus.consumerInfo("executor-verdicts");
        if (info?.created === created)
          await h.bus.deleteConsumer("executor-verdicts").catch(() => false);
        return info && info.created !== created ? true : undefined;
      },
      20_000,
    );
    await waitFor("the executor to report it", () =>
      /"durable":"executor-verdicts".*durable consumer disappeared; recreated it/.test(
        readFileSync(log, "utf8"),
      )
        ? true
        : undefined,
    );
    const standard = await h.client.submit({
      goal: "transfer",
      program: "transfer",
      input: { from: "alice", to: "bob", amount: 25 },
      requestedBy: "test",
    });
    const closed = await h.client.waitForClose([standard.run], 30_000);
    expect(closed.get(standard.run)?.body.outcome).toBe("completed");
    const tiers = (await h.trace(standard.run))
      .map((o) => o.message)
      .filter((m) => m.kind === "tier_assigned")
      .map((m) => (m.kind === "tier_assigned" ? m.body.tier : null));
    expect(tiers).toContain("standard");
  });
});
