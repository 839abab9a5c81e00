import OpenAI from "openai";
import { z } from "zod";
import { TransientError, ValidationError } from "@trias/protocol";
import { SpanKind, genAiAttributes, withSpan } from "@trias/telemetry";

export interface LlmConfig {
  baseURL: string;
  apiKey: string;
  model: string;
  timeoutMs: number;
  /** Provider name for telemetry (gen_ai.system). */
  system: string;
  /** Prices, so that run budgets can count cost as well as tokens. */
  usdPer1kInput: number;
  usdPer1kOutput: number;
}

type Env = Record<string, string | undefined>;

/** Config from TRIAS_LLM_* (or the OpenAI SDK's OPENAI_*), or null when no model is configured. */
export function llmConfigFromEnv(env: Env = process.env): LlmConfig | null {
  const baseURL = env["TRIAS_LLM_BASE_URL"] ?? env["OPENAI_BASE_URL"];
  const apiKey = env["TRIAS_LLM_API_KEY"] ?? env["OPENAI_API_KEY"];
  if (!baseURL && !apiKey) return null;
  return {
    baseURL: baseURL ?? "https://api.openai.com/v1",
    apiKey: apiKey ?? "none",
    model: env["TRIAS_LLM_MODEL"] ?? "gpt-4o-mini",
    timeoutMs: Number(env["TRIAS_LLM_TIMEOUT_MS"] ?? 30_000),
    system: env["TRIAS_LLM_SYSTEM"] ?? "openai",
    usdPer1kInput: Number(env["TRIAS_LLM_USD_PER_1K_INPUT"] ?? 0),
    usdPer1kOutput: Number(env["TRIAS_LLM_USD_PER_1K_OUTPUT"] ?? 0),
  };
}

export interface ChatMessage {
  role: "system" | "user";
  content: string;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  costUsd: number;
}

/** One model identity: JSON in, JSON out, validated by a zod schema before anyone uses it. */
export class LlmClient {
  readonly config: LlmConfig;
  readonly #client: OpenAI;
  /** Tokens used so far by this client, for budgets. */
  readonly usage: Usage = { inputTokens: 0, outputTokens: 0, costUsd: 0 };

  constructor(config: LlmConfig) {
    this.config = config;
    this.#client = new OpenAI({
      apiKey: config.apiKey,
      baseURL: config.baseURL,
      timeout: config.timeoutMs,
      maxRetries: 2,
    });
  }

  async json<S extends z.ZodType>(
    operation: string,
    messages: readonly ChatMessage[],
    schema: S,
  ): Promise<{ value: z.infer<S>; usage: Usage }> {
    return withSpan(
      `${operation} ${this.config.model}`,
      {
        kind: SpanKind.CLIENT,
        attributes: genAiAttributes({
          system: this.config.system,
          model: this.config.model,
          operation: "chat",
        }),
      },
      async (span) => {
        let res: OpenAI.Chat.Completions.ChatCompletion;
        try {
          res = await this.#client.chat.completions.create({
            model: this.config.model,
            messages: messages.map((m) => ({ role: m.role, content: m.content })),
            response_format: { type: "json_object" },
            temperature: 0,
          });
        } catch (e) {
          throw new TransientError(
            "timeout",
            `model call to ${this.config.baseURL} failed: ${(e as Error).message}`,
            { cause: e },
          );
        }
        const inputTokens = res.usage?.prompt_tokens ?? 0;
        const outputTokens = res.usage?.completion_tokens ?? 0;
        const usage: Usage = {
          inputTokens,
          outputTokens,
          costUsd:
            (inputTokens * this.config.usdPer1kInput + outputTokens * this.config.usdPer1kOutput) /
            1000,
        };
        this.usage.inputTokens += usage.inputTokens;
        this.usage.outputTokens += usage.outputTokens;
        this.usage.costUsd += usage.costUsd;
        span.setAttributes(
          genAiAttributes({
            system: this.config.system,
            model: this.config.model,
            responseModel: res.model,
            inputTokens: usage.inputTokens,
            outputTokens: usage.outputTokens,
          }),
        );
        const text = res.choices[0]?.message.content ?? "";
        let raw: unknown;
        try {
          raw = JSON.parse(text);
        } catch {
          throw new ValidationError(
            "schema_invalid",
            `the model's answer is not JSON: ${text.slice(0, 120)}`,
          );
        }
        const parsed = schema.safeParse(raw);
        if (!parsed.success)
          throw new ValidationError(
            "schema_invalid",
            `the model's answer does not match the expected shape: ${z.prettifyError(parsed.error)}`,
          );
        return { value: parsed.data, usage };
      },
    );
  }
}
