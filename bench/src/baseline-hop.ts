/**
 * One hop of the baseline pipeline, as a plain process: pull-consume `hop.<N>` from a
 * durable consumer, decode (msgpack), publish `hop.<N+1>` to JetStream and wait for the
 * store's ack, then ack the message. No signing, no schema, no policy: the floor for any
 * design that passes a step between four separate processes over JetStream.
 *
 * env: NATS_URL, NATS_USER, NATS_PASSWORD, HOP (N), BENCH_STREAM.
 */
import { connect } from "@nats-io/transport-node";
import { jetstream, type JsMsg } from "@nats-io/jetstream";
import { Packr } from "msgpackr";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

const hop = Number(process.env["HOP"] ?? "0");
const stream = process.env["BENCH_STREAM"] ?? "BENCH";
const user = process.env["NATS_USER"];
const pass = process.env["NATS_PASSWORD"];

const nc = await connect({
  servers: process.env["NATS_URL"] ?? "nats://127.0.0.1:4222",
  name: `baseline-hop-${hop}`,
  ...(user !== undefined ? { user } : {}),
  ...(pass !== undefined ? { pass } : {}),
  // The same client options as the Trias bus, so the comparison is of what is done per hop.
  noAsyncTraces: true,
});
const js = jetstream(nc, { checkAPI: false });
const consumer = await js.consumers.get(stream, `hop-${hop}`);
const messages = await consumer.consume({ max_messages: 64 });
const next = `hop.${hop + 1}`;

async function handle(m: JsMsg): Promise<void> {
  try {
    const body = packr.unpack(m.data) as Record<string, unknown>;
    await js.publish(next, packr.pack({ ...body, hop: hop + 1 }), { timeout: 10_000 });
    m.ack();
  } catch (e) {
    process.stderr.write(`hop ${hop}: ${(e as Error).message}\n`);
    m.nak(100);
  }
}

const loop = (async () => {
  // Different messages are handled concurrently, as the agents handle different runs.
  for await (const m of messages) void handle(m);
})();

process.stdout.write("ready\n");

let stopping = false;
const stop = (): void => {
  if (stopping) return;
  stopping = true;
  void (async () => {
    await messages.close();
    await loop;
    await nc.drain();
    process.exit(0);
  })();
};
process.once("SIGTERM", stop);
process.once("SIGINT", stop);
