import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadAgentCatalogue } from "@trias/tools";
import { Verifier } from "./verifier.js";

try {
  const b = await bootAgent("verifier");
  const policy = loadPolicy(b.env.policyFile);
  // Opened for reading: the verifier's NATS user may read the ledger bucket but not write
  // it, and an MCP tool's verification reads are checked read-only when the config loads.
  const { catalogue, config } = await loadAgentCatalogue({
    host: { role: "verifier", kv: (bucket) => b.bus.kv(bucket) },
    policy,
  });
  drainOnSignal(b, () => catalogue.close());
  await new Verifier(b.host, catalogue, policy).start();
  b.log.info({ config: config.file, packs: catalogue.packs() }, "verifier ready");
} catch (e) {
  fatal("verifier", e);
}
