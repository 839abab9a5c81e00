import { RECEIPTS_BUCKET } from "@trias/bus";
import { loadPolicy } from "@trias/policy";
import { EFFECTS_BUCKET, bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { Verifier } from "./verifier.js";
import { ReceiptAnchor } from "./anchor.js";

try {
  const b = await bootAgent("verifier");
  // Read-only: the verifier's NATS user may read the ledger bucket but not write it.
  const ledger = new Ledger(await b.bus.kv(LEDGER_BUCKET));
  // Read-only too: results too large for their record are read back from it.
  const effects = await b.bus.kv(EFFECTS_BUCKET);
  const policy = loadPolicy(b.env.policyFile);
  drainOnSignal(b);
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
  await new Verifier(b.host, { ledger }, policy, anchor, effects).start();
  b.log.info({}, "verifier ready");
} catch (e) {
  fatal("verifier", e);
}
