import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { Proposer } from "./proposer.js";

try {
  const b = await bootAgent("proposer");
  drainOnSignal(b);
  await new Proposer(b.host).start();
  b.log.info({ nats: b.env.natsUrl }, "proposer ready");
} catch (e) {
  fatal("proposer", e);
}
