import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { inboxPrefixOf } from "@trias/bus";
import { REVIEW_TOKEN, STREAM_NAME, type MessageOf } from "@trias/protocol";
import { waitFor } from "@trias/testing";
import { startHarness, type Harness } from "../helpers/harness.js";

// A junk flood through a raw NATS client (no signing, no Trias code): every agent refuses
// what reaches it, one rejection record per bad message at most (the agent it is addressed
// to records it; the others count it), past a burst only an aggregate per second, and no
// agent's memory runs away (docs/security.md).
const JUNK = 10_000;
const RSS_CEILING_BYTES = 150 * 1024 * 1024;
const SUBJECTS = [
  "console.task_submitted",
  "proposer.step_proposed",
  "router.tier_assigned",
  `router.${REVIEW_TOKEN}`,
  "reviewer.verdict",
  "executor.step_executed",
  "verifier.step_verified",
  "verifier.recovery_decided",
];
const AGENTS = ["proposer", "router", "reviewer-1", "reviewer-2", "executor", "verifier"];

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8")
    .split("\n")
    .find((l) => l.startsWith("VmRSS:"));
  return Number(line?.split(/\s+/)[1] ?? 0) * 1024;
}

describe("junk flood", () => {
  let h: Harness;
  beforeAll(async () => {
    h = await startHarness();
  });
  afterAll(async () => {
    await h?.close();
  });

  it(`flood - ${JUNK} junk frames: at most one record each, aggregated past the burst, every agent under 150 MB`, async () => {
    // The admin's user may publish on every role's subjects: junk reaches every agent.
    const admin = h.stack.natsUsers.find((u) => u.role === "admin");
    if (!admin) throw new Error("no admin user");
    const nc = await connect({
      servers: h.stack.natsUrl,
      user: admin.user,
      pass: admin.password,
      inboxPrefix: inboxPrefixOf(admin.user),
    });
    const jsm = await jetstreamManager(nc);
    const first = (await h.bus.lastSeq()) + 1;
    const peak = new Map<string, number>();
    const sample = () => {
      for (const a of AGENTS) {
        const pid = h.stack.pid(a);
        if (pid) peak.set(a, Math.max(peak.get(a) ?? 0, rssBytes(pid)));
      }
    };
    const sampler = setInterval(sample, 100);
    let lastBusy = "";
    try {
      for (let i = 0; i < JUNK; i++) {
        // Each frame names a new run, as an attacker would, to defeat per-run caches.
        const subject = `trias.${SUBJECTS[i % SUBJECTS.length]}.flood-${i}`;
        nc.publish(subject, randomBytes(64 + (i % 512)));
        if (i % 500 === 499) await nc.flush();
      }
      await nc.flush();
      await waitFor(
        "every agent to have taken the flood",
        async () => {
          sample();
          if ((await h.bus.lastSeq()) < first + JUNK - 1) return undefined;
          const busy: string[] = [];
          for await (const c of jsm.consumers.list(STREAM_NAME)) {
            // The lister can yield an empty slot for a consumer that went away meanwhile.
            if (c && (c.num_pending > 0 || c.num_ack_pending > 0))
              busy.push(
                `${c.name}:${c.config.filter_subject ?? ""}:${c.num_pending}/${c.num_ack_pending}`,
              );
          }
          lastBusy = busy.join(" ");
          if (busy.length > 0) return undefined;
          return true;
        },
        240_000,
        250,
      ).catch((e: unknown) => {
        throw new Error(`${String(e)}; still busy: ${lastBusy}`);
      });
      // Aggregates are published once a second: give the last one time to go out.
      await new Promise((r) => setTimeout(r, 2_500));
      sample();
    } finally {
      clearInterval(sampler);
      await nc.close();
    }

    const records: MessageOf<"message_rejected">[] = [];
    for (const s of await h.bus.readAll("trias.*.message_rejected.>", first)) {
      const m = h.registry.open(s.data).message;
      if (m.kind === "message_rejected") records.push(m);
    }
    const single = records.filter((r) => r.body.seq !== null);
    const aggregated = records.filter((r) => r.body.code === "rate_limited");
    // Never one record per agent that saw a junk message: a message asking for review is
    // addressed to the executor and to each reviewer, every other subject to one agent.
    const perSeq = new Map<number, MessageOf<"message_rejected">[]>();
    for (const r of single) perSeq.set(r.body.seq!, [...(perSeq.get(r.body.seq!) ?? []), r]);
    for (const rs of perSeq.values()) {
      const max = rs[0]!.body.subject.includes(REVIEW_TOKEN) ? 3 : 1;
      expect(rs.length).toBeLessThanOrEqual(max);
      expect(new Set(rs.map((r) => r.body.by)).size).toBe(rs.length);
    }
    const reviewJunk = Math.ceil(JUNK / SUBJECTS.length);
    expect(single.length).toBeLessThanOrEqual(JUNK + 2 * reviewJunk);
    // Past the burst, refusals are counted into aggregates rather than recorded one by one.
    expect(aggregated.length).toBeGreaterThan(0);
    const counted = aggregated.reduce(
      (n, r) => n + Number(/^(\d+) further/.exec(r.body.reason)?.[1]),
      0,
    );
    expect(counted).toBeGreaterThan(0);
    for (const [agent, rss] of peak)
      expect(rss, `${agent} peak RSS`).toBeLessThan(RSS_CEILING_BYTES);
    expect(peak.size).toBe(AGENTS.length);
    console.log(
      `flood: ${JUNK} junk frames -> ${single.length} single records, ${aggregated.length} aggregates (${counted} refusals counted); peak RSS MB ${[...peak].map(([a, b]) => `${a}=${Math.round(b / 1048576)}`).join(" ")}`,
    );
  }, 300_000);
});
