import { bootAgent, drainOnSignal, fatal } from "@trias/runtime";
import { LlmClient, llmConfigFromEnv } from "@trias/llm";
import { loadAgentCatalogue } from "@trias/tools";
import { Proposer } from "./proposer.js";

try {
  const b = await bootAgent("proposer");
  drainOnSignal(b);
  const llm = llmConfigFromEnv();
  // The model planner offers the loaded tools; the deterministic programs need none.
  const tools = llm ? (await loadAgentCatalogue({ host: null })).catalogue : null;
  await new Proposer(b.host, llm ? new LlmClient(llm) : null, tools).start();
  b.log.info(
    {
      nats: b.env.natsUrl,
      model: llm ? `${llm.model} at ${llm.baseURL}` : "none (deterministic planner only)",
    },
    "proposer ready",
  );
} catch (e) {
  fatal("proposer", e);
}
