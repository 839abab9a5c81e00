import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type BrowserContext, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { readJwks } from "@trias/signing";
import { Supervisor } from "@trias/supervise";
import { waitFor } from "@trias/testing";
import {
  CLI,
  REPO,
  approversOf,
  cliAsAdmin,
  cliEnv,
  startHarness,
  waitForKind,
  type Harness,
} from "./helpers/harness.js";

/** Debian's Chromium (apt-get install -y chromium); nothing downloads a browser. */
const CHROMIUM = process.env["CHROMIUM_BIN"] ?? "/usr/bin/chromium";
const SHOTS = join(REPO, "test", ".screenshots");
const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--disable-quic",
];

describe("web console in a browser", () => {
  let h: Harness;
  let url = "";
  const sup = new Supervisor();
  const profiles = mkdtempSync(join(tmpdir(), "trias-browser-"));
  const people = new Map<string, { ctx: BrowserContext; page: Page }>();

  const cli = (args: string[]) => cliAsAdmin(h, args);
  const shot = (page: Page, name: string) =>
    page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  /** A person with their own browser profile, whose key is made in that browser and registered. */
  async function enrol(name: string, group: string): Promise<Page> {
    const ctx = await chromium.launchPersistentContext(join(profiles, name), {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    const page = ctx.pages()[0] ?? (await ctx.newPage());
    people.set(name, { ctx, page });
    await page.goto(`${url}/identity`);
    const x = await waitFor("the browser's public key", async () => {
      const t = (await page.textContent("#public-key"))?.trim();
      return t && t !== "…" ? t : undefined;
    });
    const r = cli([
      "keys",
      "add-human",
      name,
      "--group",
      group,
      "--public-key",
      x,
      "--dir",
      h.keyDir,
    ]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain("public key only");
    await waitFor(
      `${name}'s browser key registered`,
      async () => {
        await page.reload();
        const t = await page.textContent("#registration");
        return t?.includes(`registered as ${name}`) ? true : undefined;
      },
      15_000,
      300,
    );
    return page;
  }

  beforeAll(async () => {
    mkdirSync(SHOTS, { recursive: true });
    h = await startHarness({ environment: "prod" });
    const consoleProc = sup.spawn("console", process.execPath, [CLI, "console"], {
      env: cliEnv(h),
      stdio: ["ignore", "pipe", "inherit"],
    });
    let out = "";
    consoleProc.child.stdout?.on("data", (d: Buffer) => (out += d.toString()));
    url = await waitFor("the console's address", () => /console at (\S+)/.exec(out)?.[1]);
  });
  afterAll(async () => {
    for (const p of people.values()) await p.ctx.close();
    await sup.stopAll();
    await h?.close();
    rmSync(profiles, { recursive: true, force: true });
  });

  it("console - two treasury humans approve in their browsers, the requester cannot, a rejection ends a run with its reason", async () => {
    const alice = await enrol("alice", "treasury");
    const bob = await enrol("bob", "treasury");
    const erin = await enrol("erin", "treasury");
    // The agents read the registry once a second; the test's own copy now.
    h.registry.replaceKeys(readJwks(h.stack.registryFile));
    await new Promise((r) => setTimeout(r, 1200));

    const submit = (account: string) => {
      const r = cli([
        "submit",
        "close-account",
        JSON.stringify({ account }),
        "--requested-by",
        "alice",
      ]);
      expect(r.code, r.out).toBe(0);
      return /submitted (\S+)/.exec(r.out)![1]!;
    };
    const run = submit("dave");
    const a = await waitForKind(h, run, "tier_assigned", 30_000, (m) => m.body.requires.human);
    const card = `[data-pending-step="${run}-${a.step}"]`;

    // The requester sees the step and is refused.
    await alice.goto(`${url}/approvals`);
    await alice.waitForSelector(card);
    await alice.click(`${card} button[data-decision="approve"]`);
    await alice.waitForSelector(`#status:has-text("refused")`);
    expect(await alice.textContent("#status")).toMatch(/self_approval: alice asked for this run/);
    await shot(alice, "1-requester-refused");

    // Each approver sees why the step waits, and approves.
    for (const [name, page] of [
      ["bob", bob],
      ["erin", erin],
    ] as const) {
      await page.goto(`${url}/approvals`);
      await page.waitForSelector(card);
      const text = (await page.textContent(card))!;
      expect(text).toContain("tier full");
      expect(text).toContain("2 of group treasury");
      expect(text).toContain("rule irreversible-needs-human");
      expect(text).toContain("requested by alice");
      expect(text).toMatch(/deadline \d{4}-\d\d-\d\d/);
      await shot(page, `2-${name}-sees-approval`);
      await page.click(`${card} button[data-decision="approve"]`);
      await page.waitForSelector(`#status:has-text("approved step")`);
      expect(await page.textContent("#status")).toContain(`signed by ${name}`);
    }

    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("completed");
    const exec = await waitForKind(h, run, "step_executed", 5_000, (m) => m.step === a.step);
    expect(await approversOf(h, exec)).toEqual(expect.arrayContaining(["bob", "erin"]));
    await bob.goto(`${url}/runs/${run}`);
    expect(await bob.textContent(".run-status")).toBe("completed");
    expect(await bob.textContent(".audit")).toContain("audit: OK");
    await shot(bob, "3-run-audited");

    // A rejection in the browser ends another run, with its reason.
    const run2 = submit("carol");
    const a2 = await waitForKind(h, run2, "tier_assigned", 30_000, (m) => m.body.requires.human);
    const card2 = `[data-pending-step="${run2}-${a2.step}"]`;
    await bob.goto(`${url}/approvals`);
    await bob.waitForSelector(card2);
    await bob.fill(`${card2} textarea`, "carol's account stays open");
    await bob.click(`${card2} button[data-decision="reject"]`);
    await bob.waitForSelector(`#status:has-text("rejected step")`);
    const closed2 = await waitForKind(h, run2, "run_closed", 30_000);
    expect(closed2.body.outcome).not.toBe("completed");
    expect(closed2.body.reason).toContain("carol's account stays open");
    await bob.goto(`${url}/runs/${run2}`);
    expect(await bob.textContent("main")).toContain("carol's account stays open");
    await bob.goto(`${url}/`);
    await bob.waitForSelector(`tr[data-run="${run2}"]`);
    await shot(bob, "4-runs-list");
  });

  it("console - a person cancels a run in the browser: signed with their browser key, the run closes cancelled with their reason", async () => {
    const bob = people.get("bob")!.page;
    const r = cli([
      "submit",
      "close-account",
      JSON.stringify({ account: "bob" }),
      "--requested-by",
      "alice",
    ]);
    expect(r.code, r.out).toBe(0);
    const run = /submitted (\S+)/.exec(r.out)![1]!;
    await waitForKind(h, run, "tier_assigned", 30_000, (m) => m.body.requires.human);
    await bob.goto(`${url}/runs/${run}`);
    const form = `[data-order-run="${run}"]`;
    await bob.waitForSelector(form);
    await bob.click(`${form} button[data-order="cancel"]`);
    await bob.waitForSelector(`#status:has-text("needs a reason")`);
    await bob.fill(`${form} textarea`, "opened by mistake");
    await bob.click(`${form} button[data-order="cancel"]`);
    await bob.waitForSelector(`#status:has-text("ordered for")`);
    expect(await bob.textContent("#status")).toContain("signed by bob");
    const closed = await waitForKind(h, run, "run_closed", 30_000);
    expect(closed.body.outcome).toBe("cancelled");
    expect(closed.body.reason).toMatch(/^cancelled by bob: opened by mistake/);
    const order = (await h.trace(run)).find(
      (o) => o.message.kind === "recovery_decided" && o.message.role === "human",
    );
    expect(order?.key.name).toBe("bob");
    await bob.goto(`${url}/runs/${run}`);
    expect(await bob.textContent(".run-status")).toBe("cancelled");
    expect(await bob.$(form)).toBeNull();
    await shot(bob, "5-run-cancelled");
    // Asked again, the console refuses before anything is signed: the run has ended.
    const kid = readJwks(h.stack.registryFile).keys.find(
      (k) => k.name === "bob" && k.status === "active",
    )!.kid;
    const again = await bob.evaluate(
      async (body) =>
        (
          await fetch("/api/prepare-order", {
            method: "POST",
            headers: { "content-type": "application/json" },
            body: JSON.stringify(body),
          })
        ).json() as Promise<{ error?: string }>,
      { run, action: "cancel", reason: "twice", kid },
    );
    expect(again.error).toMatch(/is cancelled already; nothing to cancel/);
  });
});
