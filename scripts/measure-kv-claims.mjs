// Which conditional KV writes exclude each other on a replicated bucket (docs/scaling.md,
// section 1, "Exclusive claims"): five concurrent writers per round on a 3-node cluster of
// local nats-servers, counting what the bucket's stream stored against what the writers were
// told. Run after `pnpm build`:  node scripts/measure-kv-claims.mjs [rounds=50] [replicas=3]
import { Bus } from "../shared/bus/dist/index.js";
import { startTestCluster } from "../shared/testing/dist/index.js";

const ROUNDS = Number(process.argv[2] ?? 50);
const REPLICAS = Number(process.argv[3] ?? 3);
const WRITERS = 5;
const enc = new TextEncoder();

const cluster = await startTestCluster();
const bus = await Bus.connect({ servers: cluster.urls, name: "measure-kv-claims" });
try {
  const open = async (name) => {
    await bus.kv(name, { create: true, replicas: REPLICAS });
    return { name, kv: await bus.kv(name) };
  };
  const [fresh, updated, recreated] = await Promise.all(
    ["m_create", "m_update", "m_recreate"].map(open),
  );
  const lastSeq = async (b) => (await bus.streamInfo(`KV_${b.name}`)).state.last_seq;
  const race = async (b, write) => {
    const before = await lastSeq(b);
    const tries = await Promise.allSettled(Array.from({ length: WRITERS }, (_, i) => write(i)));
    return [(await lastSeq(b)) - before, tries.filter((t) => t.status === "fulfilled").length];
  };
  const rows = { create: [], update: [], "create over a deleted key": [] };
  for (let r = 0; r < ROUNDS; r++) {
    const key = `k${r}`;
    // A fresh key: Nats-Expected-Last-Subject-Sequence 0.
    rows.create.push(await race(fresh, (i) => fresh.kv.create(key, enc.encode(`${i}`))));
    // One revision above 0, another key written since (so the stream's sequence moved on).
    const rev = await updated.kv.put("state", enc.encode("base"));
    await updated.kv.put("other", enc.encode(`${r}`));
    const [stored, won] = await race(updated, (i) =>
      updated.kv.update("state", enc.encode(`${i}`), rev),
    );
    rows.update.push([stored, won]);
    // KV.create of a deleted key falls back to an update from the delete marker's revision.
    await recreated.kv.put(key, enc.encode("old"));
    await recreated.kv.delete(key);
    rows["create over a deleted key"].push(
      await race(recreated, (i) => recreated.kv.create(key, enc.encode(`${i}`))),
    );
  }
  console.log(
    `nats-server ${bus.serverVersion}, R${REPLICAS}, ${WRITERS} writers, ${ROUNDS} rounds`,
  );
  for (const [what, rs] of Object.entries(rows)) {
    const several = rs.filter(([s]) => s > 1).length;
    const told = rs.filter(([, w]) => w > 1).length;
    console.log(
      `${what}: more than one stored in ${several}, more than one told it won in ${told}` +
        ` (stored per round: ${rs.map(([s]) => s).join("")})`,
    );
  }
} finally {
  await bus.drain();
  await cluster.stop();
}
