import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { Reviewer } from "./reviewer.js";

try {
  const b = await bootAgent("reviewer");
  drainOnSignal(b);
  await new Reviewer(b.host).start();
  b.log.info({ identity: b.env.name }, "reviewer ready");
} catch (e) {
  fatal("reviewer", e);
}
