import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect, nanos } from "@nats-io/transport-node";
import {
  Bus,
  DEFAULT_ACK_WAIT_MS,
  DEFAULT_MAX_ACK_PENDING,
  DEFAULT_MAX_DELIVER,
  LocalNatsServer,
  isPermissionError,
  MAX_GETS_PER_SUBJECT,
  MAX_LITERAL_READS,
  type ConsumerLost,
  type Delivery,
} from "./index.js";

/** Wait (without a deadline of its own: the test's timeout is the bound) until `cond` holds. */
async function waitUntil(cond: () => boolean): Promise<void> {
  while (!cond()) await new Promise((r) => setTimeout(r, 20));
}

describe("bus", () => {
  let server: LocalNatsServer;
  let admin: Bus;
  let router: Bus;
  const users = [
    { user: "admin", password: "a-pass", role: "admin" as const },
    { user: "router", password: "r-pass", role: "router" as const },
  ];

  beforeAll(async () => {
    server = await LocalNatsServer.start({ users });
    admin = await Bus.connect({
      servers: server.url,
      name: "admin",
      user: "admin",
      pass: "a-pass",
    });
    await admin.ensureStream();
    router = await Bus.connect({
      servers: server.url,
      name: "router",
      user: "router",
      pass: "r-pass",
    });
  });
  afterAll(async () => {
    await router?.drain();
    await admin?.drain();
    await server?.stop();
  });

  it("bus - ensureStream is idempotent and keeps history (limits retention)", async () => {
    await admin.ensureStream();
    const info = await admin.streamInfo();
    expect(info.config.retention).toBe("limits");
    expect(info.config.subjects).toEqual(["trias.>"]);
  });

  it("bus - the server drops a repeated message id", async () => {
    const a = await router.publish("trias.router.tier_assigned.dedupe", new Uint8Array([1]), {
      msgId: "same-id",
    });
    const b = await router.publish("trias.router.tier_assigned.dedupe", new Uint8Array([2]), {
      msgId: "same-id",
    });
    expect(b.duplicate).toBe(true);
    expect(b.seq).toBe(a.seq);
    expect(await admin.readAll("trias.*.*.dedupe")).toHaveLength(1);
  });

  it("bus - per-role permissions: the router cannot publish as another role or delete the trace", async () => {
    await expect(
      router.publish("trias.executor.step_executed.x", new Uint8Array([1]), { msgId: "perm-1" }),
    ).rejects.toSatisfy(isPermissionError);
    await expect(router.deleteStream()).rejects.toSatisfy(isPermissionError);
    const raw = await connect({ servers: server.url, user: "router", pass: "r-pass" });
    try {
      const jsm = await jetstreamManager(raw, { checkAPI: false });
      await expect(jsm.streams.purge(admin.stream)).rejects.toSatisfy(isPermissionError);
    } finally {
      await raw.close();
    }
  });

  it("bus - consume keeps order within a run, retries a nak, and terminates what the handler refuses", async () => {
    // Consumer mechanics, as the admin: the router's user may touch only its own durable.
    await admin.ensureConsumer("order-test", { filter: "trias.router.test_order.*" });
    for (let i = 0; i < 20; i++)
      await router.publish(`trias.router.test_order.run${i % 2}`, new Uint8Array([i]), {
        msgId: `order-${i}`,
      });
    await router.publish("trias.router.test_order.nak", new Uint8Array([99]), {
      msgId: "order-nak",
    });
    await router.publish("trias.router.test_order.term", new Uint8Array([98]), {
      msgId: "order-term",
    });
    const seen: Record<string, number[]> = {};
    let nakDeliveries = 0;
    let termDeliveries = 0;
    const done = new Promise<void>((resolve) => {
      void admin.consume("order-test", async (d: Delivery) => {
        const run = d.subject.split(".").at(-1) ?? "";
        if (run === "nak") {
          nakDeliveries = d.deliveryCount;
          if (d.deliveryCount < 2) return { type: "nak", delayMs: 50 };
        } else if (run === "term") {
          termDeliveries++;
          return { type: "term", reason: "refused" };
        } else {
          await new Promise((r) => setTimeout(r, Math.random() * 5));
          (seen[run] ??= []).push(d.data[0] ?? -1);
        }
        if (
          (seen["run0"]?.length ?? 0) === 10 &&
          (seen["run1"]?.length ?? 0) === 10 &&
          nakDeliveries === 2
        )
          resolve();
        return { type: "ack" };
      });
    });
    await done;
    expect(seen["run0"]).toEqual([0, 2, 4, 6, 8, 10, 12, 14, 16, 18]);
    expect(seen["run1"]).toEqual([1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
    expect(nakDeliveries).toBe(2);
    await new Promise((r) => setTimeout(r, 300));
    expect(termDeliveries).toBe(1);
  });

  it("bus - a durable keeps delivering while more than 1,024 messages wait out a nak delay (durable timers)", async () => {
    // An existing durable made with the old ceiling is brought to the new one.
    await admin.ensureConsumer("timers", {
      filter: "trias.router.test_timer.*",
      maxAckPending: 1024,
    });
    await admin.ensureConsumer("timers", { filter: "trias.router.test_timer.*" });
    expect((await admin.consumerInfo("timers"))?.config.max_ack_pending).toBe(
      DEFAULT_MAX_ACK_PENDING,
    );
    const n = 1_100;
    const pubs: Promise<unknown>[] = [];
    for (let i = 0; i < n; i++)
      pubs.push(
        router.publish(`trias.router.test_timer.r${i}`, new Uint8Array([1]), {
          msgId: `timer-${i}`,
        }),
      );
    await Promise.all(pubs);
    let held = 0;
    let acked = 0;
    const done = new Promise<void>((resolve) => {
      void admin.consume(
        "timers",
        (d: Delivery) => {
          // Every message but the last ten is held for a minute, as a review window would be.
          if (Number(d.subject.split(".").at(-1)?.slice(1)) < n - 10) {
            held++;
            return Promise.resolve({ type: "nak", delayMs: 60_000 });
          }
          if (++acked === 10) resolve();
          return Promise.resolve({ type: "ack" });
        },
        { batch: 256 },
      );
    });
    await done;
    expect(held).toBe(n - 10);
  });

  it("bus - ensureConsumer brings a durable made with the old 30 s ack wait to the short one", async () => {
    await admin.ensureConsumer("old-ack-wait", {
      filter: "trias.router.test_old.*",
      ackWaitMs: 30_000,
      maxDeliver: 20,
    });
    await admin.ensureConsumer("old-ack-wait", { filter: "trias.router.test_old.*" });
    const c = (await admin.consumerInfo("old-ack-wait"))?.config;
    expect(c?.ack_wait).toBe(nanos(DEFAULT_ACK_WAIT_MS));
    expect(c?.max_deliver).toBe(DEFAULT_MAX_DELIVER);
  });

  it("bus - a live consumer keeps a slow delivery from being redelivered (in-progress signals)", async () => {
    // Signals go out every 400 ms: a stall of the event loop up to 800 ms is tolerated.
    const ackWaitMs = 1_200;
    await admin.ensureConsumer("slow", { filter: "trias.router.test_slow.*", ackWaitMs });
    await router.publish("trias.router.test_slow.r1", new Uint8Array([1]), { msgId: "slow-1" });
    const deliveries: number[] = [];
    let finish!: () => void;
    const finished = new Promise<void>((r) => (finish = r));
    const sub = await admin.consume(
      "slow",
      async (d: Delivery) => {
        deliveries.push(d.deliveryCount);
        // Four ack waits of genuine work: without the signals the server hands it out again.
        await new Promise((r) => setTimeout(r, ackWaitMs * 4));
        finish();
        return { type: "ack" };
      },
      { ackWaitMs },
    );
    await finished;
    // A redelivery would have come while the handler ran; give a stray one time to show.
    await new Promise((r) => setTimeout(r, ackWaitMs * 2));
    await sub.stop();
    expect(deliveries).toEqual([1]);
  });

  it("bus - a delivery held by a consumer that died goes to its successor after the ack wait, not 30 s", async () => {
    await admin.ensureConsumer("takeover", { filter: "trias.router.test_takeover.*" });
    await router.publish("trias.router.test_takeover.r1", new Uint8Array([1]), {
      msgId: "takeover-1",
    });
    // A process takes the message and dies without an answer (its connection just closes).
    const dying = await connect({ servers: server.url, user: "admin", pass: "a-pass" });
    const taken = await (
      await jetstream(dying).consumers.get(admin.stream, "takeover")
    ).next({
      expires: 5_000,
    });
    expect(taken?.info.deliveryCount).toBe(1);
    await dying.close();
    const successor = new Promise<Delivery>((resolve) => {
      void admin.consume("takeover", (d: Delivery) => {
        resolve(d);
        return Promise.resolve({ type: "ack" });
      });
    });
    // Generous, yet far below the old 30 s ack wait this used to cost.
    const d = await Promise.race([
      successor,
      new Promise<null>((r) => setTimeout(() => r(null), 15_000)),
    ]);
    expect(d?.deliveryCount).toBe(2);
  });

  it("bus - a handled message's ack goes out with the next publish, or after the linger", async () => {
    const linger = 1_500;
    const bus = await Bus.connect({
      servers: server.url,
      name: "linger",
      user: "admin",
      pass: "a-pass",
      ackLingerMs: linger,
    });
    const pendingAcks = async (): Promise<number> =>
      (await admin.consumerInfo("linger"))?.num_ack_pending ?? -1;
    const until = async (want: number, withinMs: number): Promise<number> => {
      const deadline = Date.now() + withinMs;
      let n = await pendingAcks();
      while (n !== want && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
        n = await pendingAcks();
      }
      return n;
    };
    try {
      await bus.ensureConsumer("linger", { filter: "trias.router.test_linger.*" });
      let handled = 0;
      await bus.consume("linger", () => {
        handled++;
        return Promise.resolve({ type: "ack" });
      });
      const send = (subject: string, i: number) =>
        bus.publish(subject, new Uint8Array([i]), { msgId: `linger-${i}` });
      await send("trias.router.test_linger.r1", 1);
      while (handled < 1) await new Promise((r) => setTimeout(r, 5));
      const handledAt = Date.now();
      // Handled, and its ack waits: nothing was published since.
      expect(await pendingAcks()).toBe(1);
      // A publish (here one this consumer does not see) carries it, long before the linger.
      await send("trias.router.test_elsewhere.r2", 2);
      expect(await until(0, 1_000)).toBe(0);
      expect(Date.now() - handledAt).toBeLessThan(linger);
      // This message's ack has no later publish to ride with: the linger sends it.
      await send("trias.router.test_linger.r3", 3);
      while (handled < 2) await new Promise((r) => setTimeout(r, 5));
      expect(await pendingAcks()).toBe(1);
      expect(await until(0, linger * 3)).toBe(0);
    } finally {
      await bus.drain();
    }
  });

  it("bus - a durable deleted while consumed is recreated after the last settled message, and consuming goes on", async () => {
    await admin.ensureConsumer("lost", { filter: "trias.router.test_lost.*" });
    const seen: number[] = [];
    const lost: ConsumerLost[] = [];
    await admin.consume(
      "lost",
      (d) => {
        seen.push(d.data[0] ?? -1);
        return Promise.resolve({ type: "ack" });
      },
      { onConsumerLost: (e) => lost.push(e) },
    );
    const send = (i: number) =>
      router.publish(`trias.router.test_lost.r${i}`, new Uint8Array([i]), { msgId: `lost-${i}` });
    for (const i of [1, 2, 3]) await send(i);
    await waitUntil(() => seen.length === 3);
    const firstCreated = (await admin.consumerInfo("lost"))?.created;
    // As an operator (or, before per-identity users, any role) would: from another connection.
    const other = await Bus.connect({
      servers: server.url,
      name: "other",
      user: "admin",
      pass: "a-pass",
    });
    try {
      // nats-server 2.9 may answer a delete of a consumer it is writing to with a store
      // error after removing it: ask again until the consumer made above is gone.
      for (;;) {
        const info = await admin.consumerInfo("lost");
        if (info && info.created !== firstCreated) break;
        if (info) await other.deleteConsumer("lost").catch(() => false);
        else await new Promise((r) => setTimeout(r, 20));
      }
    } finally {
      await other.drain();
    }
    // Recreated (the loop above saw the new durable), and the bus says so.
    await waitUntil(() => lost.length > 0);
    for (const i of [4, 5]) await send(i);
    await waitUntil(() => seen.length === 5);
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(lost[0]?.reason).toMatch(/consumer_deleted|consumer_not_found/);
    expect(lost[0]?.fromSeq).toBeGreaterThan(0);
    const again = await admin.consumerInfo("lost");
    expect(again?.config.durable_name).toBe("lost");
    expect(again?.created).not.toBe(firstCreated);
  });

  it("bus - readAll returns every message of a filter in stream order, lastBySubject the newest", async () => {
    for (let i = 0; i < 700; i++)
      await router.publish("trias.router.tier_assigned.many", new Uint8Array([i % 256]), {
        msgId: `many-${i}`,
      });
    const all = await admin.readAll("trias.*.*.many");
    expect(all).toHaveLength(700);
    expect(all.every((m, i) => i === 0 || m.seq > (all[i - 1]?.seq ?? 0))).toBe(true);
    expect((await admin.lastBySubject("trias.router.tier_assigned.many"))?.seq).toBe(
      all.at(-1)?.seq,
    );
    expect(await admin.lastBySubject("trias.router.tier_assigned.none")).toBeNull();
  });

  describe("readRun: a run read from its first task_submitted", () => {
    const bytes = (s: string) => new TextEncoder().encode(s);
    let n = 0;
    /** Store a message as `who` (the console's subjects need the admin here: no console user). */
    const put = (who: Bus, subject: string) =>
      who.publish(subject, bytes(`${subject} #${n}`), { msgId: `rr-${n++}` });
    const same = (a: { seq: number; subject: string; data: Uint8Array }[]) =>
      a.map((m) => [m.seq, m.subject, Buffer.from(m.data).toString()]);
    /** Another run's messages between this run's, so that neither read is trivially contiguous. */
    const noise = async (k: number) => {
      for (let i = 0; i < k; i++) await put(router, `trias.router.tier_assigned.noise-${i % 7}`);
    };

    it("bus - readRun returns exactly the full read's events, starting at the run's task_submitted", async () => {
      await noise(50);
      const start = await put(admin, "trias.console.task_submitted.rr-clean");
      for (let i = 0; i < 5; i++) {
        await noise(20);
        await put(router, "trias.router.tier_assigned.rr-clean");
        await put(router, "trias.router.tier_assigned_review.rr-clean");
      }
      await put(admin, "trias.console.run_note.rr-clean");
      await noise(20);
      // The router's own user: the read needs only what every agent may do.
      const r = await router.readRun("rr-clean");
      expect(r.fallback).toBeNull();
      expect(r.fromSeq).toBe(start.seq);
      expect(r.messages[0]?.subject).toBe("trias.console.task_submitted.rr-clean");
      expect(r.messages).toHaveLength(12);
      expect(same(r.messages)).toEqual(same(await admin.readAll("trias.*.*.rr-clean")));
      const filtered = await router.readRun("rr-clean", {
        filter: "trias.*.tier_assigned.rr-clean",
      });
      expect(filtered.fallback).toBeNull();
      expect(same(filtered.messages)).toEqual(
        same(await admin.readAll("trias.*.tier_assigned.rr-clean")),
      );
      expect(await router.runStart("rr-clean")).toBe(start.seq);
    });

    it("bus - readRun falls back to the full read when the run has messages before its task_submitted", async () => {
      await put(router, "trias.router.tier_assigned.rr-early");
      await noise(30);
      await put(admin, "trias.console.task_submitted.rr-early");
      await put(router, "trias.router.tier_assigned.rr-early");
      const r = await router.readRun("rr-early");
      expect(r.fallback).toMatch(
        /1 message\(s\) on trias\.router\.tier_assigned\.rr-early are stored before/,
      );
      expect(r.fromSeq).toBe(1);
      expect(r.messages).toHaveLength(3);
      expect(same(r.messages)).toEqual(same(await admin.readAll("trias.*.*.rr-early")));
    });

    it("bus - readRun falls back to the full read when the run has no task_submitted", async () => {
      await put(router, "trias.router.tier_assigned.rr-orphan");
      await noise(10);
      await put(router, "trias.router.tier_assigned.rr-orphan");
      const r = await router.readRun("rr-orphan");
      expect(await router.runStart("rr-orphan")).toBeNull();
      expect(r.fallback).toMatch(/holds no task_submitted of run rr-orphan/);
      expect(same(r.messages)).toEqual(same(await admin.readAll("trias.*.*.rr-orphan")));
      const none = await router.readRun("rr-never");
      expect(none.messages).toEqual([]);
      expect(none.fallback).toMatch(/no task_submitted/);
    });

    it("bus - readRun reads a subject with more messages than it gets one by one with a consumer, the same", async () => {
      const start = await put(admin, "trias.console.task_submitted.rr-long");
      for (let i = 0; i <= MAX_GETS_PER_SUBJECT; i++) {
        if (i % 10 === 0) await noise(3);
        await put(router, "trias.router.tier_assigned.rr-long");
      }
      const r = await router.readRun("rr-long");
      expect(r.fallback).toBeNull();
      expect(r.fromSeq).toBe(start.seq);
      expect(r.messages).toHaveLength(MAX_GETS_PER_SUBJECT + 2);
      expect(same(r.messages)).toEqual(same(await admin.readAll("trias.*.*.rr-long")));
    });

    it("bus - readRun of a run on more subjects than it reads one by one uses its wildcard from the start", async () => {
      const start = await put(admin, "trias.console.task_submitted.rr-wide");
      for (let i = 0; i <= MAX_LITERAL_READS; i++) {
        await noise(2);
        await put(router, `trias.router.kind${i}.rr-wide`);
      }
      const r = await router.readRun("rr-wide");
      expect(r.fallback).toBeNull();
      expect(r.fromSeq).toBe(start.seq);
      expect(r.messages).toHaveLength(MAX_LITERAL_READS + 2);
      expect(same(r.messages)).toEqual(same(await admin.readAll("trias.*.*.rr-wide")));
    });
  });

  it("bus - history survives a server restart", async () => {
    const before = (await admin.streamInfo()).state.messages;
    await server.restart();
    const again = await Bus.connect({
      servers: server.url,
      name: "admin2",
      user: "admin",
      pass: "a-pass",
    });
    const after = (await again.streamInfo()).state.messages;
    await again.drain();
    expect(after).toBe(before);
  });
});
