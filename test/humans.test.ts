import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { EXIT } from "@trias/console";
import { join } from "node:path";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { inboxPrefixOf, isPermissionError } from "@trias/bus";
import { STREAM_NAME } from "@trias/protocol";
import { natsCredentialsFileName, readJwks, readNatsCredentials } from "@trias/signing";
import { LEDGER_BUCKET } from "@trias/tools";
import { waitFor } from "@trias/testing";
import {
  approversOf,
  startHarness,
  waitForKind,
  waitForRejection,
  type Harness,
  cliAsAdmin,
  cliAsPerson,
} from "./helpers/harness.js";

describe("humans of a group, separation of duties", () => {
  let h: Harness;
  const cli = (args: string[]) => cliAsAdmin(h, args);
  /** Each person approves with their own key and their own NATS user. */
  const person = (args: string[]) => cliAsPerson(h, args);
  beforeAll(async () => {
    h = await startHarness({ environment: "prod" });
    for (const [name, group] of [
      ["alice", "treasury"],
      ["bob", "treasury"],
      ["erin", "treasury"],
      ["olga", "ops"],
    ] as const) {
      const r = cli(["keys", "add-human", name, "--group", group, "--dir", h.keyDir]);
      expect(r.code, r.out).toBe(0);
      expect(r.out).toContain(`registered ${name}`);
      expect(r.out).toContain(`NATS user ${name} (role human`);
    }
    // Each person has a NATS user of their own now: the running server reloads its users.
    expect((await h.stack.reloadNatsUsers()).sort()).toEqual(["alice", "bob", "erin", "olga"]);
    // The agents reload the registry once a second; the test's own copy now.
    h.registry.replaceKeys(readJwks(h.stack.registryFile));
    await new Promise((r) => setTimeout(r, 1500));
  });
  afterAll(async () => {
    await h?.close();
  });

  it("humans - under prod, closing an account waits for two treasury humans; the requester, an ops human and a repeat do not count", async () => {
    const sub = cli(["submit", "close-account", '{"account":"dave"}', "--requested-by", "alice"]);
    expect(sub.code, sub.out).toBe(0);
    const run = /submitted (\S+)/.exec(sub.out)![1]!;
    const a = await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    expect(a.body.requires.humans).toEqual([{ group: "treasury", count: 2 }]);

    const pending = cli(["pending", run]);
    expect(pending.out).toContain(`${run} step ${a.step}`);

    // The requester is refused by the CLI, and by the executor's gate if her verdict is sent anyway.
    const own = person(["approve", run, String(a.step), "--as", "alice"]);
    expect(own.code, own.out).toBe(EXIT.failed);
    expect(own.out).toMatch(/self_approval: alice asked for this run/);
    const stored = await h.bus.readAll(`trias.router.*.${run}`);
    const assignment = stored.at(-1)!.data;
    const forged = h.forge.envelope("alice", "verdict", {
      run,
      step: a.step,
      attempt: a.attempt,
      body: {
        digest: a.body.digest,
        assignment,
        decision: "approve",
        strategy: "human",
        reasons: ["my own request"],
      },
    });
    await h.forge.send("human", "verdict", run, h.forge.seal("alice", forged));
    const refused = await waitForRejection(h, run, "executor", "self_approval");
    expect(refused.body.reason).toMatch(/alice asked for this run/);

    const byOlga = person(["approve", run, String(a.step), "--as", "olga"]);
    expect(byOlga.code, byOlga.out).toBe(0);
    const byBob = person(["approve", run, String(a.step), "--as", "bob"]);
    expect(byBob.code, byBob.out).toBe(0);
    const again = person(["approve", run, String(a.step), "--as", "bob"]);
    expect(again.code).toBe(EXIT.failed);
    expect(again.out).toMatch(/bob approved step \d+ of run \S+ already/);
    // One treasury human of two: nothing runs.
    await waitFor("the executor to have seen bob's verdict", async () =>
      (await h.trace(run)).some(
        (o) => o.message.kind === "verdict" && o.key.name === "bob" && o.message.role === "human",
      )
        ? true
        : undefined,
    );
    await new Promise((r) => setTimeout(r, 500));
    const closing = async () =>
      (await h.trace(run)).filter(
        (o) => o.message.kind === "step_executed" && o.message.step === a.step,
      );
    expect(await closing()).toHaveLength(0);

    expect(person(["approve", run, String(a.step), "--as", "erin"]).code).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("completed");
    const exec = await waitForKind(h, run, "step_executed", 20_000, (m) => m.step === a.step);
    const approvers = await approversOf(h, exec);
    expect(approvers).toEqual(expect.arrayContaining(["bob", "erin"]));
    expect(approvers).not.toContain("alice");
    const audit = cli(["audit", run]);
    expect(audit.code, audit.out).toBe(0);
  });

  it("humans - a person's own NATS user, made by keys add-human, reads the trace and publishes human messages, and nothing else", async () => {
    // A person cancels a run with their own key and NATS user.
    const sub = cli(["submit", "close-account", '{"account":"carol"}', "--requested-by", "bob"]);
    const run = /submitted (\S+)/.exec(sub.out)![1]!;
    await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
    const cancel = person(["cancel", run, "--reason", "duplicate request", "--as", "erin"]);
    expect(cancel.code, cancel.out).toBe(0);
    const closed = await waitForKind(h, run, "run_closed", 20_000);
    expect(closed.body.outcome).toBe("cancelled");
    expect(closed.body.reason).toMatch(/^cancelled by erin: duplicate request/);
    const creds = readNatsCredentials(join(h.keyDir, natsCredentialsFileName("erin")));
    expect(creds.user).toBe("erin");
    const nc = await connect({
      servers: h.stack.natsUrl,
      user: creds.user,
      pass: creds.password,
      inboxPrefix: inboxPrefixOf(creds.user),
    });
    try {
      const js = jetstream(nc, { checkAPI: false });
      const jsm = await jetstreamManager(nc, { checkAPI: false });
      const refused = async (what: string, p: Promise<unknown>) => {
        const e = await p.then(
          () => new Error(`${what} succeeded`),
          (x: unknown) => x,
        );
        expect(isPermissionError(e), `${what}: ${String(e)}`).toBe(true);
      };
      for (const role of ["executor", "verifier", "router", "reviewer", "console"])
        await refused(
          `erin publishes as ${role}`,
          js.publish(`trias.${role}.step_executed.erin-run`, new Uint8Array([1]), {
            timeout: 2_000,
          }),
        );
      for (const d of ["executor-verdicts", "verifier", "router"])
        await refused(`erin deletes ${d}`, jsm.consumers.delete(STREAM_NAME, d));
      await refused(
        "erin writes the ledger",
        js.publish(`$KV.${LEDGER_BUCKET}.state`, new Uint8Array([1]), { timeout: 2_000 }),
      );
      // The trace is the shared record: a person reads it (an ephemeral consumer of their own).
      const own = await jsm.consumers.add(STREAM_NAME, { ack_policy: AckPolicy.None });
      expect(own.name).not.toBe("");
    } finally {
      await nc.close();
    }
  });
});
