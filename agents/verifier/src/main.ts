import { loadPolicy } from "@trias/policy";
import { EFFECTS_BUCKET, bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { Verifier } from "./verifier.js";

try {
  const b = await bootAgent("verifier");
  // Read-only: the verifier's NATS user may read the ledger bucket but not write it.
  const ledger = new Ledger(await b.bus.kv(LEDGER_BUCKET));
  // Read-only too: results too large for their record are read back from it.
  const effects = await b.bus.kv(EFFECTS_BUCKET);
  const policy = loadPolicy(b.env.policyFile);
  drainOnSignal(b);
  await new Verifier(b.host, { ledger }, policy, effects).start();
  b.log.info({}, "verifier ready");
} catch (e) {
  fatal("verifier", e);
}
