import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadAgentCatalogue } from "@trias/tools";
import { Router } from "./router.js";

try {
  const b = await bootAgent("router");
  const policy = loadPolicy(b.env.policyFile);
  // Not used to route (the policy rates tools): loaded to check the policy names only tools
  // that exist, so a typo in a tool name stops the router here instead of denying quietly.
  const { catalogue } = await loadAgentCatalogue({ host: null, policy });
  await catalogue.close();
  drainOnSignal(b);
  await new Router(b.host, policy).start();
  b.log.info(
    { policy: policy.file, digest: policy.digest, environment: policy.doc.environment },
    "router ready",
  );
} catch (e) {
  fatal("router", e);
}
