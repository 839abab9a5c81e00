import type { KV } from "@nats-io/kv";
import { REVIEW_CLAIMS_BUCKET } from "@trias/bus";
import { LlmClient, llmConfigFromEnv } from "@trias/llm";
import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { loadAgentCatalogue } from "@trias/tools";
import { Reviewer, STAND_IN_MS, type ReviewerStrategy } from "./reviewer.js";

try {
  const b = await bootAgent("reviewer");
  const strategy = (process.env["TRIAS_REVIEWER_STRATEGY"] ?? "rules") as ReviewerStrategy;
  if (strategy !== "rules" && strategy !== "llm")
    throw new Error(`TRIAS_REVIEWER_STRATEGY must be rules or llm, not ${String(strategy)}`);
  const rawStandIn = process.env["TRIAS_REVIEW_STANDIN_MS"];
  const standInMs =
    rawStandIn === undefined || rawStandIn === "" ? STAND_IN_MS : Number(rawStandIn);
  if (!Number.isInteger(standInMs) || standInMs <= 0)
    throw new Error(
      `TRIAS_REVIEW_STANDIN_MS must be a positive whole number of milliseconds, not ${String(rawStandIn)}`,
    );
  // Claims pay for themselves when a review costs a model call. A rules review costs
  // microseconds: measured, claiming and standing by cost the server and the reviewers more
  // CPU than a second rules verdict does, so rules reviewers all judge unless told otherwise.
  const rawClaims = process.env["TRIAS_REVIEW_CLAIMS"] ?? (strategy === "llm" ? "on" : "off");
  if (rawClaims !== "on" && rawClaims !== "off")
    throw new Error(`TRIAS_REVIEW_CLAIMS must be on or off, not ${rawClaims}`);
  let claims: KV | null = null;
  if (rawClaims === "on") {
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
  const { catalogue } = await loadAgentCatalogue({ host: null });
  const reviewer = new Reviewer(b.host, {
    tools: catalogue,
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
