import OpenAI from "openai";
import { z } from "zod";
import {
  TransientError,
  ValidationError,
  envNonNegative,
  envPositiveInt,
  envText,
  readEnv,
  type Env,
} from "@trias/protocol";
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

/** @default "https://api.openai.com/v1" when only an API key is set (TRIAS_LLM_BASE_URL) */
export const DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1";
/** @default "gpt-4o-mini" (TRIAS_LLM_MODEL) */
export const DEFAULT_LLM_MODEL = "gpt-4o-mini";
/** How long one model call may take before it fails as retryable. @default 30_000 ms (TRIAS_LLM_TIMEOUT_MS) */
export const DEFAULT_LLM_TIMEOUT_MS = 30_000;
/** Provider name for telemetry (gen_ai.system). @default "openai" (TRIAS_LLM_SYSTEM) */
export const DEFAULT_LLM_SYSTEM = "openai";

/** The model settings a proposer or llm reviewer reads. Unset or empty means the default. */
export const LlmEnvSchema = z.object({
  /** Any chat-completions server. @default OPENAI_BASE_URL, else DEFAULT_LLM_BASE_URL */
  TRIAS_LLM_BASE_URL: envText,
  OPENAI_BASE_URL: envText,
  /** @default OPENAI_API_KEY, else "none" (a local server that asks for none) */
  TRIAS_LLM_API_KEY: envText,
  OPENAI_API_KEY: envText,
  /** @default DEFAULT_LLM_MODEL */
  TRIAS_LLM_MODEL: envText,
  /** @default DEFAULT_LLM_TIMEOUT_MS */
  TRIAS_LLM_TIMEOUT_MS: envPositiveInt(DEFAULT_LLM_TIMEOUT_MS, "milliseconds"),
  /** @default DEFAULT_LLM_SYSTEM */
  TRIAS_LLM_SYSTEM: envText,
  /** Price per 1,000 input tokens, so run budgets count cost. @default 0 */
  TRIAS_LLM_USD_PER_1K_INPUT: envNonNegative(0, "US dollars"),
  /** Price per 1,000 output tokens. @default 0 */
  TRIAS_LLM_USD_PER_1K_OUTPUT: envNonNegative(0, "US dollars"),
});

/**
 * Config from TRIAS_LLM_* (or the OpenAI SDK's OPENAI_*), or null when no model is
 * configured. A wrong value throws `config_invalid`, naming the variable.
 */
export function llmConfigFromEnv(env: Env = process.env): LlmConfig | null {
  const e = readEnv(LlmEnvSchema, env);
  const baseURL = e.TRIAS_LLM_BASE_URL ?? e.OPENAI_BASE_URL;
  const apiKey = e.TRIAS_LLM_API_KEY ?? e.OPENAI_API_KEY;
  if (!baseURL && !apiKey) return null;
  return {
    baseURL: baseURL ?? DEFAULT_LLM_BASE_URL,
    apiKey: apiKey ?? "none",
    model: e.TRIAS_LLM_MODEL ?? DEFAULT_LLM_MODEL,
    timeoutMs: e.TRIAS_LLM_TIMEOUT_MS,
    system: e.TRIAS_LLM_SYSTEM ?? DEFAULT_LLM_SYSTEM,
    usdPer1kInput: e.TRIAS_LLM_USD_PER_1K_INPUT,
    usdPer1kOutput: e.TRIAS_LLM_USD_PER_1K_OUTPUT,
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
