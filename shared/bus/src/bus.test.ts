import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import {
  Bus,
  DEFAULT_MAX_ACK_PENDING,
  LocalNatsServer,
  isPermissionError,
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
