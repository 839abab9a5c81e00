import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { LEDGER_BUCKET, Ledger } from "@trias/tools";
import { EFFECTS_BUCKET, Executor } from "./executor.js";

try {
  const b = await bootAgent("executor");
  const policy = loadPolicy(b.env.policyFile);
  const ledger = new Ledger(await b.bus.kv(LEDGER_BUCKET));
  const effects = await b.bus.kv(EFFECTS_BUCKET);
  drainOnSignal(b);
  await new Executor(b.host, policy, { ledger }, effects).start();
  b.log.info({ policy: policy.file, digest: policy.digest }, "executor ready");
} catch (e) {
  fatal("executor", e);
}
