import { afterEach, describe, expect, it } from "vitest";
import { z } from "zod";
import { LlmClient, llmConfigFromEnv } from "@trias/llm";
import { ChatServer, toolCalls } from "./helpers/chat-server.js";

/** The model client against the local chat-completions server: schemas, tool calls, retries. */
describe("llm client", () => {
  let chat: ChatServer | null = null;
  afterEach(async () => {
    await chat?.close();
    chat = null;
  });
  const client = (url: string, structured: "on" | "off") =>
    new LlmClient(
      llmConfigFromEnv({
        TRIAS_LLM_BASE_URL: url,
        TRIAS_LLM_API_KEY: "k",
        TRIAS_LLM_STRUCTURED_OUTPUTS: structured,
        TRIAS_LLM_ATTEMPTS: "2",
      })!,
    );
  const Verdict = z.object({
    decision: z.enum(["approve", "reject"]),
    reasons: z.array(z.string()),
  });

  it("with structured outputs on, the answer's JSON Schema is sent; an invalid answer goes back with the error once, then counts as failed", async () => {
    let n = 0;
    let alwaysBad = false;
    chat = await new ChatServer(() =>
      alwaysBad || n++ === 0 ? { decision: "maybe" } : { decision: "approve", reasons: ["ok"] },
    ).start();
    const { value } = await client(chat.url, "on").json(
      "review",
      [{ role: "user", content: "x" }],
      Verdict,
    );
    expect(value).toEqual({ decision: "approve", reasons: ["ok"] });
    const first = JSON.parse(chat.requests[0] ?? "{}") as {
      response_format?: { type?: string; json_schema?: { schema?: unknown } };
    };
    expect(first.response_format?.type).toBe("json_schema");
    expect(first.response_format?.json_schema?.schema).toMatchObject({
      properties: { decision: { enum: ["approve", "reject"] } },
    });
    const second = chat.requests[1] ?? "";
    expect(second).toContain("Your answer was refused");

    chat.requests.length = 0;
    alwaysBad = true;
    await expect(
      client(chat.url, "off").json("review", [{ role: "user", content: "x" }], Verdict),
    ).rejects.toThrow(/invalid 2 time\(s\)/);
    expect(chat.requests).toHaveLength(2);
    expect(JSON.parse(chat.requests[0] ?? "{}").response_format?.type).toBe("json_object");
  });

  it("tool calling: a call and finish_task beside it is the last step; an unknown tool is sent back", async () => {
    let n = 0;
    chat = await new ChatServer(() =>
      n++ === 0
        ? toolCalls("try", ["ledger__drain", {}])
        : toolCalls("pay", ["ledger__transfer", { amount: 5 }], ["finish_task", { summary: "ok" }]),
    ).start();
    const { choice } = await client(chat.url, "on").chooseTool(
      "plan",
      [{ role: "user", content: "x" }],
      [
        {
          name: "ledger.transfer",
          description: "move",
          parameters: {
            type: "object",
            properties: { amount: { type: "number" } },
            required: ["amount"],
            additionalProperties: false,
          },
          input: z.object({ amount: z.number() }).strict(),
        },
      ],
    );
    expect(choice).toEqual({
      kind: "call",
      tool: "ledger.transfer",
      args: { amount: 5 },
      rationale: "pay",
      last: true,
    });
    const first = JSON.parse(chat.requests[0] ?? "{}") as {
      tools: { function: { name: string; strict?: boolean } }[];
    };
    expect(first.tools.map((t) => t.function.name)).toEqual(["ledger__transfer", "finish_task"]);
    expect(first.tools[0]?.function.strict).toBe(true);
    expect(chat.requests[1]).toContain("no tool named ledger__drain");
  });
});
