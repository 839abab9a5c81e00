import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadAgentCatalogue } from "@trias/tools";
import { EFFECTS_BUCKET, Executor } from "./executor.js";

try {
  const b = await bootAgent("executor");
  const policy = loadPolicy(b.env.policyFile);
  // The packs named in the project configuration, opened here: only this process runs tools.
  const { catalogue, config } = await loadAgentCatalogue({
    host: { role: "executor", kv: (bucket) => b.bus.kv(bucket) },
    policy,
  });
  const effects = await b.bus.kv(EFFECTS_BUCKET);
  drainOnSignal(b, () => catalogue.close());
  await new Executor(b.host, policy, catalogue, effects).start();
  b.log.info(
    { policy: policy.file, digest: policy.digest, config: config.file, packs: catalogue.packs() },
    "executor ready",
  );
} catch (e) {
  fatal("executor", e);
}
