import { LlmClient, llmConfigFromEnv } from "@trias/llm";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { Reviewer, type ReviewerStrategy } from "./reviewer.js";

try {
  const b = await bootAgent("reviewer");
  const strategy = (process.env["TRIAS_REVIEWER_STRATEGY"] ?? "rules") as ReviewerStrategy;
  if (strategy !== "rules" && strategy !== "llm")
    throw new Error(`TRIAS_REVIEWER_STRATEGY must be rules or llm, not ${String(strategy)}`);
  const llm = llmConfigFromEnv();
  const reviewer = new Reviewer(
    b.host,
    strategy,
    strategy === "llm" && llm ? new LlmClient(llm) : null,
  );
  drainOnSignal(b);
  await reviewer.start();
  b.log.info({ identity: b.env.name, strategy }, "reviewer ready");
} catch (e) {
  fatal("reviewer", e);
}
