import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { compactVerify, importJWK, type JWK } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  auditAll,
  auditEvents,
  checkpointOf,
  exportTrace,
  readRun,
  type StoredEvent,
} from "@trias/console";
import { encode, runFilter, subjectFor, type MessageOf } from "@trias/protocol";
import { computeReceipt } from "@trias/runstate";
import { KeyRegistry, revokeKey } from "@trias/signing";
import { waitFor } from "@trias/testing";
import { REPO, startHarness, waitForRejection, type Harness } from "./helpers/harness.js";

describe("receipts", () => {
  let h: Harness;
  let run: string;
  let events: StoredEvent[];
  let sealed: MessageOf<"run_closed">;

  beforeAll(async () => {
    h = await startHarness();
    run = (
      await h.client.submit({
        goal: "pay",
        program: "transfer",
        input: { from: "alice", to: "bob", amount: 3 },
        requestedBy: "test",
      })
    ).run;
    sealed = (await h.client.waitForClose([run], 20_000)).get(run)!;
    events = await readRun(h.bus, run);
  });
  afterAll(async () => {
    await h?.close();
  });

  it("receipt - recomputed twice, and by a second process, it is byte-identical to the signed one", async () => {
    const covered = events
      .filter((e) => e.seq <= sealed.body.receipt.lastSeq)
      .map((e) => ({ seq: e.seq, subject: e.subject, frame: e.data }));
    const a = computeReceipt(covered, run);
    const b = computeReceipt(covered, run);
    expect(a).toEqual(b);
    expect(a.head).toBe(sealed.body.receipt.head);
    expect(a.events).toBe(sealed.body.receipt.events);

    const file = join(mkdtempSync(join(tmpdir(), "trias-receipt-")), `${run}.trace`);
    exportTrace(file, run, events);
    const child = spawn(
      process.execPath,
      [join(REPO, "agents", "console", "dist", "cli.js"), "audit", "--file", file, "--json"],
      { env: { ...process.env, TRIAS_KEY_DIR: h.keyDir } },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => child.once("exit", r));
    expect(code).toBe(0);
    const report = JSON.parse(out) as { ok: boolean; recomputedHead: string };
    expect(report.ok).toBe(true);
    expect(report.recomputedHead).toBe(sealed.body.receipt.head);
  });

  it("receipt - one changed byte in any stored event makes the audit fail and name that event", () => {
    expect(auditEvents(h.registry, run, events).ok).toBe(true);
    const covered = events.filter((e) => e.seq <= sealed.body.receipt.lastSeq);
    expect(covered.length).toBeGreaterThanOrEqual(10);
    for (const target of covered) {
      // Three positions per event: the frame header, the middle of the payload, the last byte.
      for (const at of [3, Math.floor(target.data.length / 2), target.data.length - 1]) {
        const data = Uint8Array.from(target.data);
        data[at] = (data[at] ?? 0) ^ 0x40;
        const tampered = events.map((e) => (e.seq === target.seq ? { ...e, data } : e));
        const report = auditEvents(h.registry, run, tampered);
        expect(report.ok, `byte ${at} of #${target.seq}`).toBe(false);
        expect(report.firstBad?.seq, `byte ${at} of #${target.seq}`).toBe(target.seq);
      }
    }
  });

  it("receipt - a removed, reordered or re-subjected event is named too", () => {
    const covered = events.filter((e) => e.seq <= sealed.body.receipt.lastSeq);
    const victim = covered[4]!;
    expect(
      auditEvents(
        h.registry,
        run,
        events.filter((e) => e.seq !== victim.seq),
      ).firstBad?.seq,
    ).toBe(covered[5]!.seq);
    const swapped = [...events];
    [swapped[3], swapped[4]] = [swapped[4]!, swapped[3]!];
    expect(auditEvents(h.registry, run, swapped).ok).toBe(false);
    const moved = events.map((e) =>
      e.seq === victim.seq ? { ...e, subject: e.subject.replace(run, "other-run") } : e,
    );
    expect(auditEvents(h.registry, run, moved).firstBad?.seq).toBe(victim.seq);
  });
});

/** Run the CLI as an outside auditor would; returns exit code, stdout and stderr. */
async function cli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number | null; out: string; err: string }> {
  const child = spawn(
    process.execPath,
    [join(REPO, "agents", "console", "dist", "cli.js"), ...args],
    {
      env: { ...process.env, ...env },
    },
  );
  let out = "";
  let err = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, out, err };
}

describe("receipts an outsider can verify", () => {
  let h: Harness;
  let adminEnv: Record<string, string>;

  /** Submit a transfer and wait until the verifier has closed and anchored it. */
  async function cleanRun(): Promise<{
    run: string;
    events: StoredEvent[];
    closed: MessageOf<"run_closed">;
  }> {
    const { run } = await h.client.submit({
      goal: "pay",
      program: "transfer",
      input: { from: "alice", to: "bob", amount: 1 },
      requestedBy: "test",
    });
    const closed = (await h.client.waitForClose([run], 30_000)).get(run)!;
    await waitFor(`the checkpoint of ${run}`, () =>
      checkpointOf(h.bus, run).then((c) => c ?? undefined),
    );
    return { run, events: await readRun(h.bus, run), closed };
  }
  function audit(run: string, events: readonly StoredEvent[], registry = h.registry) {
    return auditEvents(registry, run, events);
  }

  beforeAll(async () => {
    h = await startHarness();
    const admin = h.stack.natsCredentials("admin");
    adminEnv = {
      NATS_URL: h.stack.natsUrl,
      TRIAS_KEY_DIR: h.keyDir,
      ...(admin.user ? { NATS_USER: admin.user } : {}),
      ...(admin.pass ? { NATS_PASSWORD: admin.pass } : {}),
    };
  });
  afterAll(async () => {
    await h?.close();
  });

  it("receipts - a clean run names its key set, policy and environment, and every run is anchored: audit --all is OK", async () => {
    const { run, closed } = await cleanRun();
    const r = closed.body.receipt;
    expect(r.keySet?.digest).toBe(h.registry.keySetDigest(r.keySet!.at));
    expect(r.policy?.environment).toBe("dev");
    expect(r.policy?.digests.length).toBeGreaterThanOrEqual(1);
    const all = await auditAll(h.bus, h.registry);
    expect(all.problems).toEqual([]);
    expect(all.ok).toBe(true);
    expect(all.runs.find((x) => x.run === run)).toMatchObject({
      ok: true,
      anchored: expect.any(Number),
    });
    const res = await cli(["audit", "--all", "--json"], adminEnv);
    expect(res.code).toBe(0);
    expect(JSON.parse(res.out)).toMatchObject({ ok: true, exitCode: 0 });
  });

  it("receipts - the checkpoint is a standard JWS: jose verifies it with the registry's JWKS entry; one changed byte and it does not", async () => {
    const { run, closed } = await cleanRun();
    const jws = (await checkpointOf(h.bus, run))!;
    const jwks = JSON.parse(readFileSync(h.stack.registryFile, "utf8")) as { keys: JWK[] };
    const verifier = jwks.keys.find((k) => k.kid === h.signer("verifier").kid)!;
    const { payload, protectedHeader } = await compactVerify(
      jws,
      await importJWK(verifier, "EdDSA"),
    );
    expect(protectedHeader).toMatchObject({
      alg: "EdDSA",
      kid: verifier.kid,
      typ: "trias-checkpoint+json",
    });
    const cp = JSON.parse(new TextDecoder().decode(payload)) as {
      run: string;
      receipt: { head: string };
    };
    expect(cp.run).toBe(run);
    expect(cp.receipt.head).toBe(closed.body.receipt.head);
    const [hd, p, sig] = jws.split(".") as [string, string, string];
    const forged = JSON.stringify({ ...cp, receipt: { ...cp.receipt, head: "0".repeat(64) } });
    await expect(
      compactVerify(
        `${hd}.${Buffer.from(forged).toString("base64url")}.${sig}`,
        await importJWK(verifier, "EdDSA"),
      ),
    ).rejects.toThrow();
    expect(p.length).toBeGreaterThan(0);
  });

  it("receipts - a slow reviewer's verdict stored after run_closed is reported after the receipt, as a warning; the audit stays OK", async () => {
    const { run, events } = await cleanRun();
    const opened = events.map((e) => h.registry.open(e.data));
    const assignment = opened.find((o) => o.message.kind === "tier_assigned")!;
    // A human's key: no agent judges with it, so no real verdict by the same key races ours
    // (a reviewer standing by may still answer late by itself: that is a late verdict too).
    const v = h.forge.verdict(
      { bytes: assignment.bytes, message: assignment.message as MessageOf<"tier_assigned"> },
      "human-operator",
      { strategy: "human" },
    );
    const seq = await h.forge.send("human", "verdict", run, v.bytes);
    const report = audit(run, await readRun(h.bus, run));
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    expect(report.after).toContainEqual(
      expect.objectContaining({ seq, kind: "verdict", verdict: "late" }),
    );
    expect(report.after.every((a) => a.verdict === "late")).toBe(true);
    expect(report.warnings.join("\n")).toMatch(/after the receipt/);
  });

  it("receipts - an execution appended after close (re-signed with the executor's real key) is refused by the verifier and fails the audit naming it", async () => {
    const { run, events } = await cleanRun();
    const stored = events.find((e) => e.subject === subjectFor("executor", "step_executed", run))!;
    const m = h.registry.open(stored.data).message as MessageOf<"step_executed">;
    const forged = h.forge.seal("executor", {
      ...m,
      id: `forged-${run}`,
      issuedAt: Date.now(),
      expiresAt: Date.now() + 60_000,
      body: { ...m.body, result: { forged: true } },
    });
    const seq = await h.forge.publish(stored.subject, forged);
    const refusal = await waitForRejection(h, run, "verifier", "run_closed");
    expect(refusal.body.seq).toBe(seq);
    const report = audit(run, await readRun(h.bus, run));
    expect(report.ok).toBe(false);
    expect(report.firstBad?.seq).toBe(seq);
    expect(report.firstBad?.reason).toMatch(/after the receipt.*nothing may follow run_closed/);
    // The verifier's own refusal record is a record, not a second failure.
    // (Reviewers standing by may add late verdicts of their own: warnings, left out here.)
    expect(
      report.after
        .filter((a) => a.verdict !== "late")
        .map((a) => a.verdict)
        .sort(),
    ).toEqual(["record", "tampering"]);
    // The CLI names it too, with exit code 1.
    const file = join(mkdtempSync(join(tmpdir(), "trias-receipt-")), `${run}.trace`);
    exportTrace(file, run, await readRun(h.bus, run), await checkpointOf(h.bus, run));
    const res = await cli(["audit", "--file", file], adminEnv);
    expect(res.code).toBe(1);
    expect(res.out).toMatch(new RegExp(`FAILED at event #${seq}`));
  });

  it("receipts - a duplicate of a covered event, stored after close, fails the audit naming it", async () => {
    const { run, events } = await cleanRun();
    const copy = events.find((e) => e.subject.includes(".tier_assigned"))!;
    const seq = await h.forge.publish(copy.subject, copy.data);
    const report = audit(run, await readRun(h.bus, run));
    expect(report.ok).toBe(false);
    expect(report.firstBad).toMatchObject({ seq, reason: expect.stringMatching(/duplicate/) });
  });

  it("receipts - an event spliced from another run fails the audit naming it and the run it came from", async () => {
    const a = await cleanRun();
    const b = await cleanRun();
    const proposal = b.events.find((e) => e.subject.includes(".step_proposed."))!;
    const seq = await h.forge.publish(
      subjectFor("proposer", "step_proposed", a.run),
      proposal.data,
    );
    const report = audit(a.run, await readRun(h.bus, a.run));
    expect(report.ok).toBe(false);
    expect(report.firstBad).toMatchObject({
      seq,
      reason: expect.stringContaining(`belongs to run ${b.run}`),
    });
  });

  it("receipts - reordered covered events fail the audit naming the first one out of place", async () => {
    const { run, events } = await cleanRun();
    const swapped = [...events];
    [swapped[2], swapped[3]] = [swapped[3]!, swapped[2]!];
    const report = audit(run, swapped);
    expect(report.ok).toBe(false);
    // The first event out of place is the later one moved ahead; the one after it is named too.
    expect(report.firstBad?.seq).toBe(events[3]!.seq);
    expect(report.problems.join("\n")).toMatch(
      new RegExp(`seq ${events[2]!.seq}: not after seq ${events[3]!.seq}: reordered`),
    );
  });

  it("receipts - a purged run is named by audit --all (exit 1, JSON), while its neighbours still audit", async () => {
    const gone = await cleanRun();
    const kept = await cleanRun();
    await h.bus.purge({ filter: runFilter(gone.run) });
    expect(await readRun(h.bus, gone.run)).toEqual([]);
    const all = await auditAll(h.bus, h.registry);
    expect(all.ok).toBe(false);
    expect(all.missing).toEqual([
      expect.objectContaining({ run: gone.run, head: gone.closed.body.receipt.head }),
    ]);
    expect(all.problems.join("\n")).toMatch(new RegExp(`run ${gone.run} is missing`));
    expect(all.runs.find((r) => r.run === kept.run)?.ok).toBe(true);
    const res = await cli(["audit", "--all", "--json"], adminEnv);
    expect(res.code).toBe(1);
    const json = JSON.parse(res.out) as { missing: { run: string }[]; exitCode: number };
    expect(json.missing.map((m) => m.run)).toEqual([gone.run]);
    expect(json.exitCode).toBe(1);
  });

  it("receipts - unreadable input (not msgpack, truncated, foreign) exits 5 with a clear message and JSON, never a stack trace", async () => {
    const { run, events } = await cleanRun();
    const dir = mkdtempSync(join(tmpdir(), "trias-unreadable-"));
    const good = join(dir, "good.trace");
    exportTrace(good, run, events, await checkpointOf(h.bus, run));
    const full = readFileSync(good);
    const truncated = join(dir, "truncated.trace");
    writeFileSync(truncated, full.subarray(0, Math.floor(full.length / 2)));
    const text = join(dir, "notes.txt");
    writeFileSync(text, "this is not a trace\n");
    const foreign = join(dir, "foreign.msgpack");
    writeFileSync(foreign, encode({ hello: "world" }));
    const junk = join(dir, "junk.bin");
    writeFileSync(junk, Buffer.from([0xc1, 0xc1, 0xc1]));
    expect((await cli(["audit", "--file", good], adminEnv)).code).toBe(0);
    // A file that is not there is a usage error (2), named, before anything is read.
    const absent = await cli(["audit", "--file", join(dir, "absent.trace"), "--json"], adminEnv);
    expect(absent.code).toBe(2);
    expect(absent.err).toMatch(/no such file/);
    for (const [file, exitCode, code, why] of [
      [truncated, 5, "input_unreadable", /not msgpack|damaged/],
      [text, 5, "input_unreadable", /not a Trias trace export|not msgpack/],
      [foreign, 5, "input_unreadable", /not a Trias trace export/],
      [junk, 5, "input_unreadable", /not msgpack/],
    ] as const) {
      // The plain text once per kind of damage is enough: JSON for each shows the same.
      if (file === truncated || file === text) {
        const plain = await cli(["audit", "--file", file], adminEnv);
        expect(plain.code, file).toBe(exitCode);
        expect(plain.err, file).toMatch(/input_unreadable/);
        expect(plain.err, file).toMatch(why);
        expect(plain.out + plain.err, file).not.toMatch(/\n\s+at /);
      }
      const json = await cli(["audit", "--file", file, "--json"], adminEnv);
      expect(json.code, file).toBe(exitCode);
      expect(json.err, file).not.toMatch(/\n\s+at /);
      expect(JSON.parse(json.out), file).toMatchObject({
        ok: false,
        exitCode,
        error: { code, message: expect.stringMatching(why) },
      });
    }
  });

  // Last: revoking a key in the registry file makes the running agents refuse it from then on.
  it("receipts - revoking a key keeps older runs verifying; frames it signs after the revocation are refused", async () => {
    const { run, events, closed } = await cleanRun();
    const before = audit(run, events);
    expect(before.ok).toBe(true);
    const revoked = revokeKey(h.keyDir, "router");
    const later = KeyRegistry.load(h.stack.registryFile);
    const after = audit(run, events, later);
    expect(after.problems).toEqual([]);
    expect(after.ok).toBe(true);
    // The key set the receipt names is the same from the later registry: nothing before it changed.
    const ks = closed.body.receipt.keySet!;
    expect(later.keySetDigest(ks.at)).toBe(ks.digest);
    expect(later.keySetDigest(Date.now())).not.toBe(ks.digest);
    // A revocation with no time (as registries had before) would have rewritten this run's audit.
    const legacy = JSON.parse(readFileSync(h.stack.registryFile, "utf8")) as {
      keys: { kid: string; revokedAt?: number }[];
    };
    for (const k of legacy.keys) if (k.kid === revoked.kid) delete k.revokedAt;
    const rewritten = audit(run, events, new KeyRegistry(legacy as never));
    expect(rewritten.ok).toBe(false);
    expect(rewritten.problems.join("\n")).toMatch(/revoked/);
    // A frame the router signs after the revocation does not open at its store time.
    const p = h.forge.proposal(run);
    const a = h.forge.assignment(p, closed.body.receipt.policy!.digests[0]!, "light", {
      reviewers: 0,
      strategies: [],
      human: false,
    });
    const seq = await h.forge.send("router", "tier_assigned", run, a.bytes);
    const stored = (await readRun(h.bus, run)).find((e) => e.seq === seq)!;
    expect(() => later.open(stored.data, undefined, stored.timestampMs ?? null)).toThrow(/revoked/);
  });
});
