import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal, type Booted } from "@trias/runtime";
import { KeySwap, RATES_BUCKET, isNotFound } from "@trias/bus";
import type { LoadedPolicy } from "@trias/policy";
import { loadAgentCatalogue } from "@trias/tools";
import { Router } from "./router.js";
import { SharedLimiter, localLimiter, type Limiter } from "./rates.js";

try {
  const b = await bootAgent("router");
  const policy = loadPolicy(b.env.policyFile);
  // Not used to route (the policy rates tools): loaded to check the policy names only tools
  // that exist, so a typo in a tool name stops the router here instead of denying quietly.
  const { catalogue } = await loadAgentCatalogue({ host: null, policy });
  await catalogue.close();
  drainOnSignal(b);
  await new Router(b.host, policy, await limiterFor(b, policy)).start();
  b.log.info(
    { policy: policy.file, digest: policy.digest, environment: policy.doc.environment },
    "router ready",
  );
} catch (e) {
  fatal("router", e);
}

/**
 * Rate limits shared by every router replica, in the rates bucket; a trace set up before the
 * bucket existed keeps the window in this router's memory (one router only), and says so.
 */
async function limiterFor(b: Booted, policy: LoadedPolicy): Promise<Limiter> {
  try {
    return new SharedLimiter(
      policy,
      await KeySwap.open(await b.bus.kv(RATES_BUCKET), b.bus.serverVersion),
    );
  } catch (e) {
    if (!isNotFound(e)) throw e;
    b.log.warn(
      { bucket: RATES_BUCKET },
      "no rates bucket (a trace set up by an older `trias setup`): rate limits count this router's calls only",
    );
    return localLimiter(policy);
  }
}
