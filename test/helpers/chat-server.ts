import { createServer, type Server } from "node:http";

export interface ChatRequest {
  model: string;
  messages: { role: string; content: string | null }[];
  tools?: { type: "function"; function: { name: string; parameters: unknown } }[];
}

/** What `answer` returns to answer with tool calls instead of content. */
export interface ToolCallsAnswer {
  toolCalls: { name: string; arguments: unknown }[];
  /** The assistant's text beside the calls. */
  content?: string;
}

/** Answer with tool calls (chat-completions tool calling). */
export function toolCalls(content: string, ...calls: [string, unknown][]): ToolCallsAnswer {
  return { content, toolCalls: calls.map(([name, args]) => ({ name, arguments: args })) };
}

function isToolCalls(v: unknown): v is ToolCallsAnswer {
  return typeof v === "object" && v !== null && Array.isArray((v as ToolCallsAnswer).toolCalls);
}

/**
 * A local server that speaks the OpenAI chat-completions protocol, answering with whatever
 * `answer` returns for each request, and keeping every request body it received.
 */
export class ChatServer {
  readonly requests: string[] = [];
  #server: Server | null = null;
  url = "";

  constructor(readonly answer: (req: ChatRequest) => unknown) {}

  async start(): Promise<this> {
    this.#server = createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => {
        this.requests.push(body);
        if (req.method !== "POST" || !req.url?.endsWith("/chat/completions")) {
          res
            .writeHead(404, { "content-type": "application/json" })
            .end(JSON.stringify({ error: { message: "not found" } }));
          return;
        }
        const parsed = JSON.parse(body) as ChatRequest;
        const a = this.answer(parsed);
        const content = isToolCalls(a) ? (a.content ?? null) : JSON.stringify(a);
        const message = isToolCalls(a)
          ? {
              role: "assistant",
              content,
              tool_calls: a.toolCalls.map((c, i) => ({
                id: `call_${this.requests.length}_${i}`,
                type: "function",
                function: {
                  name: c.name,
                  arguments:
                    typeof c.arguments === "string" ? c.arguments : JSON.stringify(c.arguments),
                },
              })),
            }
          : { role: "assistant", content };
        res.writeHead(200, { "content-type": "application/json" }).end(
          JSON.stringify({
            id: `chatcmpl-${this.requests.length}`,
            object: "chat.completion",
            created: Math.floor(Date.now() / 1000),
            model: parsed.model,
            choices: [
              {
                index: 0,
                message,
                finish_reason: isToolCalls(a) ? "tool_calls" : "stop",
              },
            ],
            usage: {
              prompt_tokens: Math.ceil(body.length / 4),
              completion_tokens: Math.ceil(JSON.stringify(message).length / 4),
              total_tokens: 0,
            },
          }),
        );
      });
    });
    await new Promise<void>((r) => this.#server?.listen(0, "127.0.0.1", r));
    const addr = this.#server.address();
    this.url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}/v1`;
    return this;
  }

  async close(): Promise<void> {
    await new Promise<void>((r) => this.#server?.close(() => r()));
  }
}
