import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, LocalNatsServer, PENDING_BUCKET } from "@trias/bus";
import { pendingHuman, readRun } from "@trias/console";
import { runFilter, subjectFor } from "@trias/protocol";
import { waitFor } from "@trias/testing";
import {
  CLI,
  cliAsPersonAsync,
  startHarness,
  uniqueRun,
  waitForKind,
  type Harness,
} from "./helpers/harness.js";

/**
 * The `trias` CLI as an operator runs it: its own process, the console's or the person's own
 * NATS user (the credentials beside the key), never the admin.
 */
const cli = cliAsPersonAsync;

const same = (a: readonly { seq: number; subject: string; data: Uint8Array }[]) =>
  a.map((m) => [m.seq, m.subject, Buffer.from(m.data).toString("hex")]);

describe("cold paths read a run from its start, pending steps from an index", () => {
  let h: Harness;
  /** A connection of its own as the console, so its message count is this test's reads only. */
  let reader: Bus;
  const completed: { run: string; seq: number }[] = [];
  const waitingRuns: string[] = [];

  beforeAll(async () => {
    // Staging: closing an account waits for a person; a balance check needs no one.
    h = await startHarness({ environment: "staging" });
    const console = h.stack.natsCredentials("console");
    reader = await Bus.connect({
      servers: h.stack.natsUrl,
      name: "coldpath-reader",
      ...(console.user !== undefined ? { user: console.user } : {}),
      ...(console.pass !== undefined ? { pass: console.pass } : {}),
    });
    for (const account of ["dave", "carol"]) {
      const { run } = await h.client.submit({
        goal: `close ${account}`,
        program: "close-account",
        input: { account },
        requestedBy: "test",
      });
      waitingRuns.push(run);
    }
    // Runs that never wait for anyone: the trace the old `trias pending` read in full.
    for (let i = 0; i < 10; i++)
      completed.push(
        await h.client.submit({
          goal: "balance",
          program: "balance-check",
          input: { account: "alice" },
          requestedBy: "test",
        }),
      );
    const closed = await h.client.waitForClose(
      completed.map((c) => c.run),
      60_000,
    );
    expect(closed.size).toBe(completed.length);
    // Each waiting run is still until a person decides: its step asked, both reviewers heard.
    for (const run of waitingRuns) {
      await waitForKind(h, run, "tier_assigned", 20_000, (m) => m.body.requires.human);
      await waitFor("two reviewer verdicts", async () =>
        (await h.trace(run)).filter((o) => o.message.kind === "verdict").length >= 2
          ? true
          : undefined,
      );
    }
  }, 120_000);
  afterAll(async () => {
    await reader?.drain();
    await h?.close();
  });

  it("coldpath - pending steps come from the index: only the waiting runs are read, not the trace", async () => {
    // The verifier keeps the index as it folds the runs: wait until it has both keys.
    const kv = await reader.kv(PENDING_BUCKET);
    await waitFor("both waiting runs in the pending index", async () =>
      (await Promise.all(waitingRuns.map((r) => kv.get(r)))).every((e) => e?.operation === "PUT")
        ? true
        : undefined,
    );
    /** What one `pending` across runs fetched, and what one full read of the trace fetched. */
    const measure = async () => {
      const stored = (await h.bus.streamInfo()).state.messages;
      const before = reader.stats().read;
      const steps = await pendingHuman(reader, h.registry);
      const fetched = reader.stats().read - before;
      const fullBefore = reader.stats().read;
      await reader.readAll("trias.>");
      const full = reader.stats().read - fullBefore;
      expect(full).toBeGreaterThanOrEqual(stored);
      // The waiting runs' own messages (still: each waits for a person).
      const theirs = (await Promise.all(waitingRuns.map((r) => h.bus.readAll(runFilter(r))))).flat()
        .length;
      return { steps, fetched, full, theirs };
    };
    const first = await measure();
    expect(first.steps.map((w) => w.run).sort()).toEqual([...waitingRuns].sort());
    expect(first.steps.every((w) => w.tool === "ledger.close_account")).toBe(true);
    // Exactly the waiting runs' messages: no other run's.
    expect(first.fetched).toBe(first.theirs);
    // Ten more runs that wait for no one: the full read grows with them, `pending` does not.
    const more: string[] = [];
    for (let i = 0; i < 10; i++)
      more.push(
        (
          await h.client.submit({
            goal: "balance",
            program: "balance-check",
            input: { account: "bob" },
            requestedBy: "test",
          })
        ).run,
      );
    expect((await h.client.waitForClose(more, 60_000)).size).toBe(more.length);
    const second = await measure();
    expect(second.steps.map((w) => w.run).sort()).toEqual([...waitingRuns].sort());
    expect(second.full - first.full).toBeGreaterThanOrEqual(more.length * 4);
    expect(second.fetched).toBe(second.theirs);

    // The CLI, as the console's own NATS user, lists the same.
    const listed = await cli(h, ["pending"]);
    expect(listed.code).toBe(0);
    for (const run of waitingRuns) expect(listed.out).toMatch(new RegExp(`${run} step 1 `));
    expect(listed.out).toMatch(/2 step\(s\) waiting/);
    expect(listed.out).not.toMatch(/read the whole trace|from the start of the trace/);
  });

  it("coldpath - without the pending bucket (a trace set up before it), pending reads the whole trace and says so", async () => {
    const server = await LocalNatsServer.start();
    const bus = await Bus.connect({ servers: server.url, name: "no-bucket" });
    try {
      await bus.ensureStream();
      const said: string[] = [];
      expect(await pendingHuman(bus, h.registry, undefined, (why) => said.push(why))).toEqual([]);
      expect(said).toEqual([
        expect.stringMatching(/no trias_pending bucket .*read the whole trace/),
      ]);
    } finally {
      await bus.drain();
      await server.stop();
    }
  });

  it("coldpath - a closed run's key leaves the index without a delete marker", async () => {
    const run = waitingRuns[0]!;
    const rejected = await cli(h, ["reject", run, "1", "--reason", "not today"]);
    expect(rejected.code).toBe(0);
    await waitForKind(h, run, "run_closed", 30_000);
    const kv = await reader.kv(PENDING_BUCKET);
    await waitFor("the closed run's key removed", async () =>
      (await kv.get(run)) === null ? true : undefined,
    );
    // Only live keys are stored: the other waiting run's.
    const keys: string[] = [];
    for await (const k of await kv.keys()) keys.push(k);
    expect(keys).toEqual([waitingRuns[1]]);
    expect((await h.bus.streamInfo(`KV_${PENDING_BUCKET}`)).state.messages).toBe(1);
    const steps = await pendingHuman(reader, h.registry);
    expect(steps.map((w) => w.run)).toEqual([waitingRuns[1]]);
  });

  it("coldpath - a run read from its task_submitted is exactly the full read, and audits the same", async () => {
    for (const { run, seq } of completed.slice(0, 3)) {
      const r = await reader.readRun(run);
      expect(r.fallback).toBeNull();
      expect(r.fromSeq).toBe(seq);
      expect(r.messages[0]?.subject).toBe(subjectFor("console", "task_submitted", run));
      expect(same(r.messages)).toEqual(same(await h.bus.readAll(runFilter(run))));
    }
    const { run } = completed[0]!;
    const audit = await cli(h, ["audit", run]);
    expect(audit.code).toBe(0);
    expect(audit.out).not.toMatch(/from the start of the trace/);
  });

  it("coldpath - a run with a message stored before its task_submitted is read in full, says so, and audits as the full read does", async () => {
    const run = uniqueRun("early");
    // Junk on the run's subject before the run exists: the router refuses it on arrival, and
    // the run's start (its task_submitted) no longer covers all of it.
    await h.bus.publish(subjectFor("proposer", "step_proposed", run), randomBytes(64), {
      msgId: `junk-${run}`,
    });
    await h.client.submit(
      { goal: "read", program: "balance-check", input: { account: "alice" }, requestedBy: "test" },
      run,
    );
    const closed = await h.client.waitForClose([run], 30_000);
    expect(closed.get(run)?.body.outcome).toBe("completed");
    const r = await reader.readRun(run);
    expect(r.fallback).toMatch(/stored before run .*'s task_submitted/);
    expect(r.fromSeq).toBe(1);
    expect(same(r.messages)).toEqual(same(await h.bus.readAll(runFilter(run))));
    const seen: string[] = [];
    const events = await readRun(reader, run, (why) => seen.push(why));
    expect(events).toHaveLength(r.messages.length);
    expect(seen).toHaveLength(1);
    const audit = await cli(h, ["audit", run]);
    expect(audit.out).toMatch(/stored before run .*; read run .* from the start of the trace/);
    expect(audit.code).toBe(0);
  });

  it("coldpath - a run without a task_submitted is read in full; a run that does not exist is no such run", async () => {
    const run = uniqueRun("orphan");
    await h.bus.publish(subjectFor("proposer", "step_proposed", run), randomBytes(64), {
      msgId: `orphan-${run}`,
    });
    await waitFor("the refusal record", async () =>
      (await h.rejections(run)).length > 0 ? true : undefined,
    );
    const r = await reader.readRun(run);
    expect(r.fallback).toMatch(/holds no task_submitted of run/);
    expect(same(r.messages)).toEqual(same(await h.bus.readAll(runFilter(run))));
    const missing = await cli(h, ["replay", uniqueRun("never")]);
    expect(missing.out).toMatch(/no such run/);
    expect(missing.out).not.toMatch(/from the start of the trace/);
  });

  it("coldpath - watch <run> shows the run so far from its start, then what follows", async () => {
    const run = waitingRuns[1]!;
    const child = spawn(process.execPath, [CLI, "watch", run], {
      env: { ...process.env, NATS_URL: h.stack.natsUrl, TRIAS_KEY_DIR: h.keyDir },
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    try {
      // The history: the submission and the step that waits for a person.
      await waitFor("the run so far", () =>
        out.includes(`${run} submitted: close carol`) && /needs 2 reviewer\(s\) \+ human/.test(out)
          ? true
          : undefined,
      );
      expect(out).not.toContain(`${run} closed`);
      // What follows: the person's decision and the close, as they are stored.
      expect((await cli(h, ["reject", run, "1", "--reason", "no"])).code).toBe(0);
      await waitForKind(h, run, "run_closed", 30_000);
      await waitFor("the close shown", () => (out.includes(`${run} closed`) ? true : undefined));
      expect(out).toMatch(/verdict reject by human-operator/);
      // Nothing of another run.
      for (const c of completed) expect(out).not.toContain(c.run);
    } finally {
      child.kill("SIGTERM");
      await new Promise((r) => child.once("exit", r));
    }
  });
});
