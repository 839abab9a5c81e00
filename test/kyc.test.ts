import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, LocalNatsServer, SUBJECT_KEYS_BUCKET } from "@trias/bus";
import { kycDemoTasks } from "@trias/console";
import type { MessageOf } from "@trias/protocol";
import { waitFor } from "@trias/testing";
import { SubjectKeys } from "@trias/tools";
import { REPO, startHarness, type Harness } from "./helpers/harness.js";

/** The `trias` CLI as an operator runs it: its own process, the operator's keys. */
async function cli(h: Harness, args: string[]): Promise<{ code: number | null; out: string }> {
  const admin = h.stack.natsCredentials("admin");
  const child = spawn(
    process.execPath,
    [join(REPO, "agents", "console", "dist", "cli.js"), ...args],
    {
      env: {
        ...process.env,
        NATS_URL: h.stack.natsUrl,
        NATS_USER: admin.user ?? "",
        NATS_PASSWORD: admin.pass ?? "",
        TRIAS_KEY_DIR: h.keyDir,
      },
    },
  );
  let out = "";
  child.stdout.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => child.once("exit", r));
  return { code, out };
}

/** Every file under `dir`, as bytes. */
function filesUnder(dir: string): { file: string; bytes: Buffer }[] {
  const out: { file: string; bytes: Buffer }[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...filesUnder(p));
    else out.push({ file: p, bytes: readFileSync(p) });
  }
  return out;
}

const HIGH_RISK = {
  subject: "c-2001",
  country: "XR",
  monthlyVolume: 2500,
  personal: {
    name: "Wilhelmina Ravensworth",
    dob: "1984-03-09",
    email: "w.ravensworth@example.org",
    document: "RX4471902",
  },
};
const SANCTIONED = {
  subject: "c-2002",
  country: "FR",
  monthlyVolume: 800,
  personal: {
    name: "ilsa MARROWGATE",
    dob: "1971-11-30",
    email: "imarrow@example.net",
    document: "FR9930117",
  },
};
const CLEAR = [...Object.values(HIGH_RISK.personal), ...Object.values(SANCTIONED.personal)];

describe("kyc onboarding and erasure", () => {
  let h: Harness;
  let storeDir: string;
  let logDir: string;
  let stopped = false;
  beforeAll(async () => {
    storeDir = mkdtempSync(join(tmpdir(), "trias-kyc-store-"));
    h = await startHarness({
      environment: "kyc",
      natsFactory: async (users) => LocalNatsServer.start({ users, storeDir }),
    });
    logDir = join(h.keyDir, "..", "logs");
  });
  afterAll(async () => {
    if (!stopped) await h?.close();
  });

  const messages = async (run: string) => (await h.trace(run)).map((o) => o.message);
  const closed = (run: string) =>
    waitFor(
      "the run to close",
      async () =>
        (await messages(run)).find((m): m is MessageOf<"run_closed"> => m.kind === "run_closed"),
      120_000,
    );
  const submitted = (out: string) => /submitted (run-[\w-]+)/.exec(out)?.[1] ?? "";

  it("kyc - a high-risk customer's account opens only after a human approves; a sanctioned one is refused; personal data never reaches the trace, logs or models in clear; erasure leaves receipts verifying and nothing recoverable", async () => {
    const high = await cli(h, ["submit", "kyc", JSON.stringify(HIGH_RISK)]);
    expect(high.code).toBe(0);
    const run = submitted(high.out);
    const sanctioned = await cli(h, ["submit", "kyc", JSON.stringify(SANCTIONED)]);
    const refusedRun = submitted(sanctioned.out);

    // The account step (step 4) waits for a human: the router routed on risk "high".
    const waiting = await waitFor(
      "the account step waiting for a human",
      async () =>
        (await messages(run)).find(
          (m): m is MessageOf<"tier_assigned"> =>
            m.kind === "tier_assigned" && m.body.requires.human,
        ),
      120_000,
    );
    expect(waiting.step).toBe(4);
    expect(waiting.body.tier).toBe("full");
    expect((await messages(run)).some((m) => m.kind === "step_executed" && m.step === 4)).toBe(
      false,
    );
    const approved = await cli(h, ["approve", run, "4"]);
    expect(approved.code).toBe(0);
    expect((await closed(run)).body.outcome).toBe("completed");

    const refused = await closed(refusedRun);
    // The refusal rolls the file back (its documents discarded) instead of opening anything.
    expect(refused.body.outcome).toBe("rolled_back");
    const screening = (await messages(refusedRun)).find(
      (m): m is MessageOf<"step_executed"> => m.kind === "step_executed" && m.step === 2,
    );
    expect(JSON.stringify(screening?.body)).toMatch(/sanctions list entry SAN-002/);
    expect(
      (await messages(refusedRun)).some((m) => m.kind === "step_executed" && m.step === 4),
    ).toBe(false);

    // Sealed from the console on: no clear value in the stream's stored bytes, an export, or a log.
    const exported = join(mkdtempSync(join(tmpdir(), "trias-kyc-export-")), "trace.json");
    expect((await cli(h, ["export", run, exported])).code).toBe(0);
    const keys = new SubjectKeys(await h.bus.kv(SUBJECT_KEYS_BUCKET));
    const before = await keys.get(HIGH_RISK.subject);
    expect(before.state).toBe("present");
    const keyBytes = Buffer.from(before.state === "present" ? before.key : new Uint8Array());

    // Only the console (admin) and the executor may read the key store.
    const reviewerCreds = h.stack.natsCredentials("reviewer-1");
    const reviewer = await Bus.connect({
      servers: h.stack.natsUrl,
      name: "kyc-test-reviewer",
      ...(reviewerCreds.user ? { user: reviewerCreds.user, pass: reviewerCreds.pass ?? "" } : {}),
    });
    try {
      const asReviewer = new SubjectKeys(await reviewer.kv(SUBJECT_KEYS_BUCKET));
      await expect(asReviewer.get(HIGH_RISK.subject)).rejects.toThrow();
    } finally {
      await reviewer.drain();
    }

    const erased = await cli(h, [
      "erase",
      HIGH_RISK.subject,
      "--reason",
      "GDPR art. 17 request R-77",
    ]);
    expect(erased.code).toBe(0);
    expect(erased.out).toMatch(/c-2001 erased \(key destroyed\)/);
    expect((await keys.get(HIGH_RISK.subject)).state).toBe("erased");
    const eraseRun = /^(erase-[\w-]+):/m.exec(erased.out)?.[1] ?? "";
    const record = (await messages(eraseRun)).find((m) => m.kind === "subject_erased");
    expect(record?.role).toBe("console");

    // Every receipt still verifies (they cover ciphertext) and replay works.
    const audit = await cli(h, ["audit", run]);
    expect(audit.out).toMatch(/audit: OK/);
    expect(audit.code).toBe(0);
    expect((await cli(h, ["audit", "--file", exported])).code).toBe(0);
    const all = await cli(h, ["audit", "--all"]);
    expect(all.out).not.toMatch(/FAILED/);
    expect(all.code).toBe(0);
    const replay = await cli(h, ["trace", run]);
    expect(replay.code).toBe(0);
    expect(replay.out).toMatch(/kyc\.check_identity .*"name":"\[erased\]"/);
    expect(replay.out).not.toContain("pii:v1:");
    const other = await cli(h, ["trace", refusedRun]);
    expect(other.out).toContain("[personal data of c-2002]");

    // Nothing recoverable: no clear datum anywhere, and the key's bytes are gone from the server's store.
    await h.stack.killAll();
    const logs = filesUnder(logDir);
    await h.close();
    stopped = true;
    const stored = filesUnder(storeDir);
    const exportBytes = readFileSync(exported);
    expect(logs.map((l) => l.file).join(" ")).toMatch(/executor.*\.log/);
    expect(keyBytes.length).toBe(32);
    for (const datum of CLEAR) {
      for (const { file, bytes } of [...stored, ...logs, { file: exported, bytes: exportBytes }])
        expect(bytes.includes(datum), `${datum} found in ${file}`).toBe(false);
    }
    expect(stored.some(({ bytes }) => bytes.includes(keyBytes))).toBe(false);
    expect(stored.some(({ bytes }) => bytes.includes(Buffer.from(HIGH_RISK.subject)))).toBe(true);
  }, 400_000);
});

describe("trias demo --scenario kyc", () => {
  it("demo kyc - three customers under the kyc policy: a person approves the high-risk one, the sanctioned one is rolled back, an erasure leaves the audit passing; no personal datum printed in clear", async () => {
    const keyDir = join(mkdtempSync(join(tmpdir(), "trias-demo-kyc-")), "keys");
    const child = spawn(
      process.execPath,
      [join(REPO, "agents", "console", "dist", "cli.js"), "demo", "--scenario", "kyc"],
      { env: { ...process.env, NATS_URL: "", TRIAS_KEY_DIR: keyDir, NO_COLOR: "1" } },
    );
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((r) => child.once("exit", r));
    expect(code, out).toBe(0);
    const summary = out.slice(out.indexOf("Summary"));
    expect(summary).toMatch(/✓ \S+ +Onboard a customer \(low risk\) +completed/);
    expect(summary).toMatch(/✓ \S+ +Onboard a customer from a high-risk country +completed/);
    expect(summary).toMatch(/✓ \S+ +Onboard a customer on the sanctions list +rolled_back/);
    expect(summary).not.toContain("✗");
    expect(out).toMatch(/human-operator approved step 4 \(as: trias approve run-\S+ 4\)/);
    expect(out).toMatch(/matches sanctions list entry SAN-001/);
    expect(out).toMatch(/audit ok after erasure; replayed identity check: .*"name":"\[erased\]"/);
    for (const t of kycDemoTasks("x")) {
      const personal = (t.task.input as { personal: Record<string, string> }).personal;
      for (const v of Object.values(personal)) expect(out, v).not.toContain(v);
    }
  }, 240_000);

  it("demo kyc - --env does not apply to the kyc scenario: a usage error naming why", () => {
    const r = spawnSync(
      process.execPath,
      [
        join(REPO, "agents", "console", "dist", "cli.js"),
        "demo",
        "--scenario",
        "kyc",
        "--env",
        "prod",
      ],
      { encoding: "utf8", env: { ...process.env, NATS_URL: "" } },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--env does not apply to --scenario kyc/);
  });
});
