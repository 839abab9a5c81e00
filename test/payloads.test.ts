import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, PAYLOADS_BUCKET, isPermissionError } from "@trias/bus";
import {
  MAX_FRAME_BYTES,
  argsRefOf,
  canonicalBytes,
  isArgsRef,
  payloadChunks,
  payloadKeys,
  refDigest,
  subjectFor,
  type MessageOf,
} from "@trias/protocol";
import { busPayloads, isResultRef } from "@trias/runtime";
import { ConsoleServer } from "@trias/console";
import {
  approversOf,
  cliAsAdmin,
  policyVariant,
  startHarness,
  waitForKind,
  type Harness,
} from "./helpers/harness.js";

// Every run reaches a terminal state whatever its payload sizes (DESIGN.md, 12): arguments
// larger than INLINE_ARGUMENT_BYTES travel by reference, their bytes in the payloads bucket,
// bounded by the policy's limits.maxArgumentBytes; no frame embeds the arguments more than
// once (the execution record names the frames that authorised it by digest); and a result
// too large for its record travels by digest, its bytes in the executor's bucket.
describe("payload sizes", () => {
  let h: Harness;
  /** The web console, where a person reads a step's arguments before deciding. */
  let web: ConsoleServer;

  beforeAll(async () => {
    const file = policyVariant("dev", "payloads", (doc) => {
      (doc["tools"] as Record<string, unknown>)["noop.blob"] = {
        op: "read",
        objects: { count: 0 },
        domains: ["test"],
      };
      doc["limits"] = { maxArgumentBytes: 640 * 1024 };
      // What only the resolved arguments show (a reference has neither field): the router
      // routes on one, the rules reviewers refuse on the other.
      (doc["rules"] as unknown[]).push({
        id: "payload-escalate",
        when: 'tool == "noop.echo" && has(args.escalate)',
        tier: "full",
      });
      (doc["tools"] as Record<string, Record<string, unknown>>)["noop.batch"]!["checks"] = [
        { id: "payload-forbidden", when: "has(args.forbidden)", message: "forbidden marker" },
      ];
    });
    h = await startHarness({ policyFile: file });
    web = new ConsoleServer({
      bus: h.bus,
      registry: h.registry,
      registryFile: h.stack.registryFile,
    });
    await web.start();
  });
  afterAll(async () => {
    await web?.stop();
    await h?.close();
  });

  async function submit(tool: string, args: object) {
    const { run } = await h.client.submit({
      goal: "payload size",
      program: "steps",
      input: { steps: [{ tool, args }] as never },
      requestedBy: "test",
    });
    return run;
  }

  /** A string argument of `kb` KiB: its canonical encoding is a few bytes more. */
  const blobOf = (kb: number, fill = "x") => fill.repeat(kb * 1024);

  it.each([
    ["noop.echo", "light"],
    ["noop.batch", "full"],
  ])(
    "payloads - a 500 KB argument to %s travels by reference, runs under its %s tier's quorum on the real bytes, and the run closes completed",
    async (tool, tier) => {
      const args = { blob: blobOf(500) };
      const ref = argsRefOf(canonicalBytes(args));
      const run = await submit(tool, args);
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome, closed.body.reason).toBe("completed");
      // Every frame of the step carries the reference, never the bytes.
      const task = await h.bus.readAll(subjectFor("console", "task_submitted", run));
      expect(task[0]!.data.length).toBeLessThan(4 * 1024);
      const proposal = await waitForKind(h, run, "step_proposed");
      expect(proposal.body.args).toEqual(ref);
      const [stored] = await h.bus.readAll(subjectFor("executor", "step_executed", run));
      expect(stored!.data.length).toBeLessThan(4 * 1024);
      const exec = h.registry.open(stored!.data).message as MessageOf<"step_executed">;
      expect(exec.body.tier).toBe(tier);
      expect(exec.body.args).toEqual(ref);
      // The tool ran on the very bytes the reference names.
      expect(exec.body.result).toMatchObject({ sha256: refDigest(ref), bytes: ref.bytes });
      const approvers = await approversOf(h, exec);
      expect(approvers).toHaveLength(tier === "full" ? 2 : 0);
      expect(approvers.every((a) => a.startsWith("reviewer-"))).toBe(true);
      const verified = await waitForKind(h, run, "step_verified");
      expect(verified.body.verdict).toBe("passed");
      expect(verified.body.checks.filter((c) => !c.ok)).toEqual([]);
      const audit = cliAsAdmin(h, ["audit", run]);
      expect(audit.code, audit.out).toBe(0);
      // What a person reads before approving: the bytes, read back and checked.
      const shown = cliAsAdmin(h, ["args", run, "0"]);
      expect(shown.code, shown.out).toBe(0);
      expect(shown.out).toContain(`travel by reference: ${ref.$ref}`);
      const json = shown.out.split("\n").find((l) => l.startsWith("{")) ?? "";
      expect(JSON.parse(json)).toEqual(args);
      // And in the web console: the run page names the reference and links to the bytes.
      const page = await (await fetch(`${web.url}/runs/${run}`)).text();
      expect(page).toContain(`arguments by reference (${ref.bytes} bytes`);
      expect(page).toContain(`/runs/${run}/steps/0/args`);
      const served = await fetch(`${web.url}/runs/${run}/steps/0/args`);
      expect(served.status).toBe(200);
      expect(await served.json()).toEqual(args);
    },
  );

  it("payloads - the router routes and the reviewers judge the resolved arguments, not their reference", async () => {
    const escalated = await submit("noop.echo", { blob: blobOf(400, "e"), escalate: true });
    const routed = await waitForKind(h, escalated, "tier_assigned");
    expect(routed.body.tier).toBe("full");
    expect(routed.body.explanation.join(" ")).toMatch(/payload-escalate/);
    const closed = await waitForKind(h, escalated, "run_closed", 30_000);
    expect(closed.body.outcome, closed.body.reason).toBe("completed");
    const forbidden = await submit("noop.batch", { blob: blobOf(400, "f"), forbidden: true });
    const refused = await waitForKind(h, forbidden, "run_closed", 30_000);
    expect(refused.body.outcome).toBe("rejected");
    expect(refused.body.reason).toMatch(/forbidden marker/);
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", forbidden))).toHaveLength(0);
  });

  it("payloads - a small argument travels inline: nothing is written to the payloads bucket", async () => {
    const kv = await h.bus.kv(PAYLOADS_BUCKET);
    const before = (await kv.status()).values;
    const run = await submit("noop.echo", { n: 1, note: blobOf(8) });
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome, closed.body.reason).toBe("completed");
    const proposal = await waitForKind(h, run, "step_proposed");
    expect(proposal.body.args).toEqual({ n: 1, note: blobOf(8) });
    expect(isArgsRef(proposal.body.args)).toBe(false);
    expect((await kv.status()).values).toBe(before);
  });

  it("payloads - an argument over the policy's limits.maxArgumentBytes is denied by the router before any review or effect, and the run closes with the reason", async () => {
    // 700 KB: over this policy's 640 KiB bound, under the default.
    const run = await submit("noop.batch", { blob: blobOf(700) });
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("rejected");
    expect(closed.body.reason).toMatch(
      /arguments are \d+ bytes, over the payloads policy's limits.maxArgumentBytes of 655360/,
    );
    const assigned = await waitForKind(h, run, "tier_assigned");
    expect(assigned.body.denied).toMatch(/limits.maxArgumentBytes/);
    expect(await h.bus.readAll(`trias.*.verdict.${run}`)).toHaveLength(0);
    expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(0);
  });

  it.each([
    ["absent", /are not in the payloads bucket/],
    ["changed", /do not match the bytes stored under their digest/],
  ])(
    "payloads - a reference whose bytes are %s is denied before any effect and the run closes with the reason",
    async (how, reason) => {
      const args = { blob: blobOf(300, how === "absent" ? "a" : "c") };
      const ref = argsRefOf(canonicalBytes(args));
      if (how === "changed") {
        // Other bytes of the same length under the reference's keys (only the admin can).
        const other = payloadChunks(canonicalBytes({ blob: blobOf(300, "d") }));
        const kv = await h.bus.kv(PAYLOADS_BUCKET);
        for (const [i, key] of payloadKeys(ref).entries()) await kv.put(key, other[i]!);
      }
      const run = await submit("noop.write", ref);
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome).toBe("rejected");
      expect(closed.body.reason).toMatch(reason);
      expect(await h.bus.readAll(`trias.*.verdict.${run}`)).toHaveLength(0);
      expect(await h.bus.readAll(subjectFor("executor", "step_executed", run))).toHaveLength(0);
      // A person asking for them in the web console is told why, not shown other bytes.
      const served = await fetch(`${web.url}/runs/${run}/steps/0/args`);
      expect(served.status).toBe(400);
      expect(((await served.json()) as { error: string }).error).toMatch(/^payload_unavailable: /);
    },
  );

  it("payloads - only the identities that build arguments may write the bucket: a reviewer's credentials can read a payload but not write one", async () => {
    const as = (user: string) => {
      const u = h.stack.natsUsers.find((x) => x.user === user)!;
      return Bus.connect({ servers: h.stack.natsUrl, name: user, user: u.user, pass: u.password });
    };
    const args = { blob: blobOf(100, "r") };
    const console_ = await as("console");
    const reviewer = await as("reviewer-1");
    try {
      const ref = await busPayloads(console_).store(args);
      expect(isArgsRef(ref)).toBe(true);
      expect(await busPayloads(reviewer).resolve(ref)).toEqual(args);
      const write = await busPayloads(reviewer)
        .store({ blob: blobOf(100, "w") })
        .then(
          () => null,
          (e: unknown) => e,
        );
      expect(isPermissionError(write), String(write)).toBe(true);
      const kv = await h.bus.kv(PAYLOADS_BUCKET);
      const forged = payloadKeys(argsRefOf(canonicalBytes({ blob: blobOf(100, "w") })));
      expect(await kv.get(forged[0]!)).toBeNull();
    } finally {
      await Promise.all([console_.drain(), reviewer.drain()]);
    }
  });

  it("payloads - an effect with a 500 KB argument is undone by a rollback whose order names the undo by reference, and the run closes rolled back", async () => {
    const blob = blobOf(500, "u");
    const { run } = await h.client.submit({
      goal: "payload size",
      program: "steps",
      input: {
        steps: [
          { tool: "noop.write", args: { blob } },
          { tool: "flaky.write", args: { key: `payloads-${Date.now()}`, passFromAttempt: 99 } },
        ] as never,
      },
      requestedBy: "test",
    });
    const closed = await waitForKind(h, run, "run_closed", 40_000);
    expect(closed.body.outcome, closed.body.reason).toBe("rolled_back");
    const trace = (await h.trace(run)).map((o) => o.message);
    // The order names the effect it undoes by digest, and its undo (noop.write is undone by an
    // echo of the same arguments) by the same reference: every frame stays small.
    const order = trace.find(
      (m): m is MessageOf<"recovery_decided"> =>
        m.kind === "recovery_decided" && m.body.compensation?.step === 0,
    );
    expect(order?.body.evidence).toMatch(/^[0-9a-f]{64}$/);
    const ref = argsRefOf(canonicalBytes({ blob }));
    expect(order?.body.compensation?.args).toEqual(ref);
    const undo = trace.find(
      (m): m is MessageOf<"step_executed"> =>
        m.kind === "step_executed" && m.step === 0 && m.body.compensationOf !== null,
    );
    expect(undo?.body.tool).toBe("noop.echo");
    expect(undo?.body.args).toEqual(ref);
    // The undo ran on the effect's own bytes, read back and checked.
    expect(undo?.body.result).toMatchObject({ sha256: refDigest(ref), bytes: ref.bytes });
  });

  it.each([250 * 1024, 400 * 1024])(
    "payloads - a result of %i bytes completes its run; past what a record holds it travels by digest and the verifier reads it back whole",
    async (bytes) => {
      const run = await submit("noop.blob", { bytes });
      const closed = await waitForKind(h, run, "run_closed", 30_000);
      expect(closed.body.outcome).toBe("completed");
      const [stored] = await h.bus.readAll(subjectFor("executor", "step_executed", run));
      expect(stored?.data.length).toBeLessThan(MAX_FRAME_BYTES);
      const exec = h.registry.open(stored!.data).message as MessageOf<"step_executed">;
      // A result that cannot fit beside its evidence goes by reference, never a refused record.
      if (bytes > MAX_FRAME_BYTES) expect(isResultRef(exec.body.result)).toBe(true);
      if (isResultRef(exec.body.result))
        expect(exec.body.result["trias.result"].bytes).toBeGreaterThan(bytes);
      else expect((exec.body.result as { blob: string }).blob).toHaveLength(bytes);
      const verified = await waitForKind(h, run, "step_verified");
      expect(verified.body.checks.find((c) => c.name === "whole result")).toMatchObject({
        ok: true,
        detail: `${bytes} characters`,
      });
    },
  );
});
