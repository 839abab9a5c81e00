import { PENDING_BUCKET, RECEIPTS_BUCKET } from "@trias/bus";
import { loadPolicy } from "@trias/policy";
import { EFFECTS_BUCKET, bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadAgentCatalogue } from "@trias/tools";
import { Verifier } from "./verifier.js";
import { ReceiptAnchor } from "./anchor.js";
import { PendingIndex } from "./pending.js";

try {
  const b = await bootAgent("verifier");
  // Read-only: results too large for their record are read back from the effects bucket.
  const effects = await b.bus.kv(EFFECTS_BUCKET);
  const policy = loadPolicy(b.env.policyFile);
  // Opened for reading: the verifier's NATS user may read the ledger bucket but not write
  // it, and an MCP tool's verification reads are checked read-only when the config loads.
  const { catalogue, config } = await loadAgentCatalogue({
    host: { role: "verifier", kv: (bucket) => b.bus.kv(bucket) },
    policy,
  });
  drainOnSignal(b, () => catalogue.close());
  let anchor: ReceiptAnchor | null = null;
  try {
    const kv = await b.bus.kv(RECEIPTS_BUCKET);
    // Opening a bucket does not look for it: ask its status once, at start.
    await kv.status();
    anchor = new ReceiptAnchor(kv, b.host.signer, b.host.now);
  } catch (e) {
    b.log.warn(
      { bucket: RECEIPTS_BUCKET, err: String(e) },
      "no receipts bucket: closed runs are not anchored, so a purged run goes unnoticed by `trias audit --all`; `trias setup` (admin) creates it",
    );
  }
  let pending: PendingIndex | null = null;
  try {
    const kv = await b.bus.kv(PENDING_BUCKET);
    await kv.status();
    pending = new PendingIndex(b.bus, kv, b.log);
  } catch (e) {
    b.log.warn(
      { bucket: PENDING_BUCKET, err: String(e) },
      "no pending bucket: `trias pending` reads the whole trace to find steps waiting for a person; `trias setup` (admin) creates it",
    );
  }
  await new Verifier(b.host, catalogue, policy, anchor, effects, pending).start();
  b.log.info({ config: config.file, packs: catalogue.packs() }, "verifier ready");
} catch (e) {
  fatal("verifier", e);
}
