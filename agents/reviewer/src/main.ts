import type { KV } from "@nats-io/kv";
import { REVIEW_CLAIMS_BUCKET } from "@trias/bus";
import { LlmClient, llmConfigFromEnv } from "@trias/llm";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadPolicy } from "@trias/policy";
import { loadAgentCatalogue } from "@trias/tools";
import { readReviewerConfig } from "./config.js";
import { Reviewer } from "./reviewer.js";

try {
  const { strategy, claims: claimsOn, standInMs } = readReviewerConfig();
  const b = await bootAgent("reviewer");
  let claims: KV | null = null;
  if (claimsOn) {
    try {
      claims = await b.bus.kv(REVIEW_CLAIMS_BUCKET);
      // Opening a bucket does not look for it: ask, so a missing one is known now.
      await claims.status();
    } catch (e) {
      claims = null;
      // A trace set up by an older version: still correct, each reviewer judges every step.
      b.log.warn(
        { bucket: REVIEW_CLAIMS_BUCKET, err: String(e) },
        "no review claims bucket: every reviewer judges every step it may; `trias setup` (admin) creates it",
      );
    }
  }
  const llm = llmConfigFromEnv();
  const policy = loadPolicy(b.env.policyFile);
  const { catalogue } = await loadAgentCatalogue({ host: null, policy });
  const reviewer = new Reviewer(b.host, {
    tools: catalogue,
    policy,
    strategy,
    llm: strategy === "llm" && llm ? new LlmClient(llm) : null,
    claims,
    standInMs,
  });
  drainOnSignal(b);
  await reviewer.start();
  b.log.info(
    { identity: b.env.name, strategy, claims: claims !== null, standInMs },
    "reviewer ready",
  );
} catch (e) {
  fatal("reviewer", e);
}
