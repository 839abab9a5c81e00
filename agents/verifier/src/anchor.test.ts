import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Bus, LocalNatsServer, RECEIPTS_BUCKET } from "@trias/bus";
import { ReceiptCheckpoint, type Receipt } from "@trias/protocol";
import { checkAnchorChain, checkpointKey } from "@trias/runstate";
import { Signer, generateIdentity } from "@trias/signing";
import { ReceiptAnchor } from "./anchor.js";

const RUNS_PER_REPLICA = 40;

function receipt(i: number): Receipt {
  return {
    alg: "sha256-chain/v1",
    head: i.toString(16).padStart(64, "0"),
    events: 4,
    firstSeq: 1,
    lastSeq: 4,
  };
}

describe("ReceiptAnchor on a real nats-server", () => {
  let server: LocalNatsServer;
  let bus: Bus;

  beforeAll(async () => {
    server = await LocalNatsServer.start();
    bus = await Bus.connect({ servers: server.url, name: "anchor-test" });
    await bus.kv(RECEIPTS_BUCKET, { create: true });
  });

  afterAll(async () => {
    await bus?.drain();
    await server?.stop();
  });

  it("anchor - two replicas closing many runs at once write one gapless chain, each run once, without chasing each other", async () => {
    const replicas = await Promise.all(
      ["verifier", "verifier-2"].map(async (name) => {
        const { priv } = await generateIdentity({ name, role: "verifier" });
        return new ReceiptAnchor(await bus.kv(RECEIPTS_BUCKET), new Signer(priv));
      }),
    );
    // Every run closes at once on both replicas: the way a burst of closes arrives.
    const jobs = replicas.flatMap((a, r) =>
      Array.from({ length: RUNS_PER_REPLICA }, (_, i) =>
        a.anchor({
          run: `run-${r}-${i}`,
          closeSeq: i + 1,
          outcome: "completed",
          receipt: receipt(r * 1000 + i),
        }),
      ),
    );
    const positions = await Promise.all(jobs);
    expect(new Set(positions).size).toBe(2 * RUNS_PER_REPLICA);

    const kv = await bus.kv(RECEIPTS_BUCKET);
    const entries: ReceiptCheckpoint[] = [];
    for (let n = 1; n <= 2 * RUNS_PER_REPLICA; n++) {
      const e = await kv.get(checkpointKey(n));
      expect(e?.operation, `checkpoint ${n}`).toBe("PUT");
      const payload = (e?.string() ?? "").split(".")[1] ?? "";
      entries.push(
        ReceiptCheckpoint.parse(JSON.parse(Buffer.from(payload, "base64url").toString())),
      );
    }
    expect(await kv.get(checkpointKey(2 * RUNS_PER_REPLICA + 1))).toBeNull();
    const chain = checkAnchorChain(entries);
    expect(chain.problems).toEqual([]);
    expect(chain.runs.size).toBe(2 * RUNS_PER_REPLICA);

    // Contention is linear: a replica loses a position only to the other's entries (at most
    // one conflict per entry the other wrote). Before anchors were serialised per process, the
    // same burst cost thousands (each concurrent anchor walked from the stored head).
    const conflicts = replicas[0]!.conflicts + replicas[1]!.conflicts;
    expect(conflicts).toBeLessThanOrEqual(2 * RUNS_PER_REPLICA);

    // A redelivered close is anchored once: the same position comes back.
    const again = await replicas[1]!.anchor({
      run: "run-0-0",
      closeSeq: 1,
      outcome: "completed",
      receipt: receipt(0),
    });
    expect(again).toBe(positions[0]);
  });
});
