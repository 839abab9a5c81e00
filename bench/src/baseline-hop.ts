/**
 * One hop of a reference pipeline, as a plain process: pull-consume `<prefix>.<N>` from a
 * durable consumer, decode (msgpack), publish `<prefix>.<N+1>` to JetStream and wait for
 * the store's ack, then ack the message. No schema, no policy, no state: the floor for any
 * design that passes a step between four separate processes over JetStream.
 *
 * Signed (SIGN_SEED set): each message is a 64-byte Ed25519 signature followed by its
 * payload; the hop checks the previous hop's signature before decoding (SIGNATURE_CHECKS
 * times, standing in for the embedded frames an agent checks besides the message itself)
 * and signs what it publishes, with the agents' own Ed25519 (libsodium).
 *
 * env: NATS_URL, NATS_USER, NATS_PASSWORD, HOP (N), BENCH_STREAM, HOP_PREFIX;
 * signed: SIGN_SEED and SIGN_PUBLIC (this hop's key), PREV_PUBLIC (the sender's), hex;
 * SIGNATURE_CHECKS (1).
 */
import { connect } from "@nats-io/transport-node";
import { jetstream, type JsMsg } from "@nats-io/jetstream";
import { ed25519 } from "@trias/signing";
import { Packr } from "msgpackr";
import { payloadOf, sealFrame, signatureOf } from "./signed-frame.js";

const packr = new Packr({ useRecords: false, mapsAsObjects: true });

const env = (k: string): string | undefined => process.env[k];
const hex = (k: string): Buffer => Buffer.from(env(k) ?? "", "hex");
const hop = Number(env("HOP") ?? "0");
const stream = env("BENCH_STREAM") ?? "BENCH";
const prefix = env("HOP_PREFIX") ?? "hop";
const user = env("NATS_USER");
const pass = env("NATS_PASSWORD");
const signing = env("SIGN_SEED") ? ed25519.signingKey(hex("SIGN_SEED"), hex("SIGN_PUBLIC")) : null;
const previous = signing ? ed25519.verifyingKey(hex("PREV_PUBLIC")) : null;
const checks = Math.max(1, Number(env("SIGNATURE_CHECKS") ?? "1"));

const nc = await connect({
  servers: env("NATS_URL") ?? "nats://127.0.0.1:4222",
  name: `${prefix}-${hop}`,
  ...(user !== undefined ? { user } : {}),
  ...(pass !== undefined ? { pass } : {}),
  // The same client options as the Trias bus, so the comparison is of what is done per hop.
  noAsyncTraces: true,
});
const js = jetstream(nc, { checkAPI: false });
const consumer = await js.consumers.get(stream, `${prefix}-${hop}`);
const messages = await consumer.consume({ max_messages: 64 });
const next = `${prefix}.${hop + 1}`;

/** The payload of a message, its signature checked first when this pipeline signs. */
function opened(data: Uint8Array): Uint8Array {
  if (!previous || !signing) return data;
  const sig = signatureOf(data);
  const payload = payloadOf(data);
  for (let i = 0; i < checks; i++)
    if (!previous.verify(payload, sig)) throw new Error(`hop ${hop}: signature does not match`);
  return payload;
}

function sealed(payload: Uint8Array): Uint8Array {
  return signing ? sealFrame(signing, payload) : payload;
}

async function handle(m: JsMsg): Promise<void> {
  let body: Record<string, unknown>;
  try {
    body = packr.unpack(opened(m.data)) as Record<string, unknown>;
  } catch (e) {
    // A message that does not open never will: drop it (the driver reports it missing).
    process.stderr.write(`${(e as Error).message}\n`);
    m.term();
    return;
  }
  try {
    await js.publish(next, sealed(packr.pack({ ...body, hop: hop + 1 })), { timeout: 10_000 });
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
