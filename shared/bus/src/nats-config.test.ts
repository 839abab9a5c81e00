import { describe, expect, it } from "vitest";
import { ResumePoint } from "./bus.js";
import { durablesOf, natsConfig, permissionsOf, type NatsUser } from "./nats-config.js";

const users: NatsUser[] = [
  { user: "admin", password: "a", role: "admin" },
  { user: "proposer", password: "p", role: "proposer" },
  { user: "reviewer-1", password: "r1", role: "reviewer" },
  { user: "reviewer-2", password: "r2", role: "reviewer" },
  { user: "executor", password: "e", role: "executor" },
  { user: "console", password: "c", role: "console" },
  { user: "verifier", password: "v", role: "verifier" },
];
const of = (name: string) => permissionsOf(users.find((u) => u.user === name) as NatsUser, users);

describe("nats-config", () => {
  // [identity, subject, in allow, in deny]
  const table: [string, string, boolean, boolean][] = [
    ["reviewer-1", "$JS.API.CONSUMER.CREATE.TRIAS.reviewer-reviewer-1.>", true, false],
    ["reviewer-1", "$JS.API.CONSUMER.MSG.NEXT.TRIAS.reviewer-reviewer-1", true, false],
    ["reviewer-1", "$JS.ACK.TRIAS.reviewer-reviewer-1.>", true, false],
    ["reviewer-1", "$JS.API.CONSUMER.CREATE.TRIAS.reviewer-reviewer-2.>", false, false],
    ["reviewer-1", "$JS.API.CONSUMER.DELETE.TRIAS.reviewer-reviewer-2", false, true],
    ["reviewer-1", "$JS.API.CONSUMER.MSG.NEXT.TRIAS.reviewer-reviewer-2", false, true],
    ["reviewer-1", "$JS.API.CONSUMER.DELETE.TRIAS.executor-verdicts", false, true],
    ["reviewer-1", "$JS.ACK.TRIAS.reviewer-reviewer-2.>", false, false],
    ["reviewer-1", "trias.reviewer.>", true, false],
    ["reviewer-1", "$KV.trias_reviews.>", true, false],
    ["reviewer-1", "$KV.trias_ledger.>", false, false],
    ["executor", "$KV.trias_ledger.>", true, false],
    ["executor", "$JS.API.CONSUMER.CREATE.TRIAS.executor-verdicts.>", true, false],
    ["executor", "$JS.API.CONSUMER.DELETE.TRIAS.reviewer-reviewer-1", false, true],
    ["console", "trias.console.>", true, false],
    ["console", "$JS.API.CONSUMER.CREATE.TRIAS", true, false],
    ["console", "$JS.API.CONSUMER.DELETE.TRIAS.proposer-tasks", false, true],
    ["console", "$JS.API.STREAM.DELETE.TRIAS", false, false],
    ["console", "$JS.API.STREAM.PURGE.TRIAS", false, false],
    ["proposer", "$JS.API.CONSUMER.CREATE.TRIAS.proposer-tasks.>", true, false],
    ["proposer", "trias.executor.>", false, false],
    // The payloads bucket: those who build a step's arguments write it, everyone reads it.
    ["console", "$KV.trias_payloads.>", true, false],
    ["proposer", "$KV.trias_payloads.>", true, false],
    ["verifier", "$KV.trias_payloads.>", true, false],
    ["reviewer-1", "$KV.trias_payloads.>", false, false],
    ["executor", "$KV.trias_payloads.>", false, false],
    // The pending index: the verifier writes and removes keys, everyone may list them.
    ["verifier", "$KV.trias_pending.>", true, false],
    ["verifier", "$JS.API.STREAM.MSG.DELETE.KV_trias_pending", true, false],
    ["verifier", "$JS.API.STREAM.MSG.DELETE.TRIAS", false, false],
    ["console", "$KV.trias_pending.>", false, false],
    ["console", "$JS.API.STREAM.MSG.DELETE.KV_trias_pending", false, false],
    ["console", "$JS.API.CONSUMER.CREATE.KV_trias_pending", true, false],
    ["executor", "$KV.trias_pending.>", false, false],
  ];
  it.each(table)("nats-config - %s: %s allowed %s, denied %s", (name, subject, allow, deny) => {
    const p = of(name);
    expect(p.publish.allow.includes(subject)).toBe(allow);
    expect((p.publish.deny ?? []).includes(subject)).toBe(deny);
  });

  it("nats-config - each identity subscribes to its own inbox only; the admin may do anything", () => {
    expect(of("reviewer-2").subscribe?.allow).toEqual(["_INBOX_reviewer-2.>"]);
    expect(of("admin")).toEqual({ publish: { allow: [">"] } });
  });

  it("nats-config - durables: one per reviewer identity and replica, none for the console or a human", () => {
    expect(durablesOf({ user: "reviewer-2", role: "reviewer" })).toEqual([
      "reviewer-reviewer-2",
      "reviewer-reviewer-2-r2",
      "reviewer-reviewer-2-r3",
      "reviewer-reviewer-2-r4",
    ]);
    expect(durablesOf({ user: "console", role: "console" })).toEqual([]);
    expect(durablesOf({ user: "alice", role: "human" })).toEqual([]);
  });

  it("nats-config - an agent writes its own partition lease table only; the console and people none", () => {
    expect(of("reviewer-2").publish.allow).toContain("$KV.trias_leases.reviewer-2");
    expect(of("reviewer-2").publish.allow.filter((s) => s.startsWith("$KV.trias_leases."))).toEqual(
      ["$KV.trias_leases.reviewer-2"],
    );
    expect(of("console").publish.allow.some((s) => s.startsWith("$KV.trias_leases."))).toBe(false);
  });

  it("nats-config - passwords as environment references name the identity", () => {
    const conf = natsConfig({ port: 1, storeDir: "/s", users, passwordsFromEnv: true });
    expect(conf).toContain('user: "reviewer-2", password: $REVIEWER_2_PASSWORD');
    expect(conf).not.toContain('"r2"');
  });
});

describe("resume point", () => {
  const start = (floor: number, delivered: number, pending: number) =>
    new ResumePoint({
      ack_floor: { stream_seq: floor },
      delivered: { stream_seq: delivered },
      num_ack_pending: pending,
    });
  // [what happened, expected resume sequence]
  const table: [string, (r: ResumePoint) => void, number, number][] = [
    ["fresh durable, nothing seen", () => undefined, 0, 1],
    ["all seen settled", (r) => (r.delivered(3), r.settled(3), r.delivered(7), r.settled(7)), 0, 8],
    ["one held (nak'd)", (r) => (r.delivered(3), r.delivered(7), r.settled(7)), 0, 3],
    ["in flight", (r) => (r.delivered(5), r.delivered(9)), 0, 5],
  ];
  it.each(table)("resume point - %s", (_what, events, pending, want) => {
    const r = start(0, 0, pending);
    events(r);
    expect(r.resumeAt()).toBe(want);
  });

  it("resume point - messages pending before this process hold the floor until settled here", () => {
    const r = start(10, 20, 2);
    r.delivered(25);
    r.settled(25);
    expect(r.resumeAt()).toBe(11);
    r.delivered(12);
    r.settled(12);
    expect(r.resumeAt()).toBe(11);
    r.delivered(15);
    r.settled(15);
    expect(r.resumeAt()).toBe(26);
  });
});
