import { loadPolicy } from "@trias/policy";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { Router } from "./router.js";

try {
  const b = await bootAgent("router");
  const policy = loadPolicy(b.env.policyFile);
  drainOnSignal(b);
  await new Router(b.host, policy).start();
  b.log.info(
    { policy: policy.file, digest: policy.digest, environment: policy.doc.environment },
    "router ready",
  );
} catch (e) {
  fatal("router", e);
}
