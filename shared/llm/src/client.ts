import OpenAI from "openai";
import { z } from "zod";
import {
  TransientError,
  ValidationError,
  envEnum,
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
  /** Hold the server to the answer's JSON Schema (response_format json_schema, strict tools). */
  structuredOutputs: boolean;
  /** Answers asked for in all when one is invalid (the error goes back to the model). */
  maxAttempts: number;
}

/** @default "https://api.openai.com/v1" when only an API key is set (TRIAS_LLM_BASE_URL) */
export const DEFAULT_LLM_BASE_URL = "https://api.openai.com/v1";
/** @default "gpt-4o-mini" (TRIAS_LLM_MODEL) */
export const DEFAULT_LLM_MODEL = "gpt-4o-mini";
/** How long one model call may take before it fails as retryable. @default 30_000 ms (TRIAS_LLM_TIMEOUT_MS) */
export const DEFAULT_LLM_TIMEOUT_MS = 30_000;
/** Provider name for telemetry (gen_ai.system). @default "openai" (TRIAS_LLM_SYSTEM) */
export const DEFAULT_LLM_SYSTEM = "openai";

/** Answers asked for in all when the model's answer is invalid. @default 3 (TRIAS_LLM_ATTEMPTS) */
export const DEFAULT_LLM_ATTEMPTS = 3;

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
  /**
   * Structured outputs (json_schema answers, strict tool schemas): on for servers that
   * support them (OpenAI, vLLM, llama.cpp recent); off sends json_object. @default "off"
   */
  TRIAS_LLM_STRUCTURED_OUTPUTS: envEnum(["on", "off"]),
  /** @default DEFAULT_LLM_ATTEMPTS */
  TRIAS_LLM_ATTEMPTS: envPositiveInt(DEFAULT_LLM_ATTEMPTS, "answers"),
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
    structuredOutputs: e.TRIAS_LLM_STRUCTURED_OUTPUTS === "on",
    maxAttempts: e.TRIAS_LLM_ATTEMPTS,
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

  /** One chat-completions call, with its span and its usage counted. */
  async #complete(
    operation: string,
    params: Omit<OpenAI.Chat.Completions.ChatCompletionCreateParamsNonStreaming, "model">,
  ): Promise<{ message: OpenAI.Chat.Completions.ChatCompletionMessage; usage: Usage }> {
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
            temperature: 0,
            ...params,
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
        const message = res.choices[0]?.message;
        if (!message)
          throw new ValidationError("schema_invalid", "the model's answer has no message");
        return { message, usage };
      },
    );
  }

  /**
   * A JSON answer validated by `schema`. With structured outputs on, the server is held to
   * the schema (response_format json_schema); either way an invalid answer is sent back with
   * the validation error, at most `maxAttempts` times in all.
   */
  async json<S extends z.ZodType>(
    operation: string,
    messages: readonly ChatMessage[],
    schema: S,
  ): Promise<{ value: z.infer<S>; usage: Usage }> {
    const convo: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = messages.map((m) => ({
      role: m.role,
      content: m.content,
    }));
    const total: Usage = { inputTokens: 0, outputTokens: 0, costUsd: 0 };
    let last = "";
    for (let attempt = 0; attempt < this.config.maxAttempts; attempt++) {
      const { message, usage } = await this.#complete(operation, {
        messages: convo,
        response_format: this.config.structuredOutputs
          ? {
              type: "json_schema",
              json_schema: {
                name: operation.replace(/[^a-zA-Z0-9_-]/g, "_"),
                schema: z.toJSONSchema(schema, { io: "output", unrepresentable: "any" }),
                strict: false,
              },
            }
          : { type: "json_object" },
      });
      addUsage(total, usage);
      const text = message.content ?? "";
      const r = parseAnswer(text, schema);
      if (r.ok) return { value: r.value, usage: total };
      last = r.error;
      convo.push({ role: "assistant", content: text });
      convo.push({
        role: "user",
        content: `Your answer was refused: ${r.error}. Answer again, only JSON of the asked shape.`,
      });
    }
    throw new ValidationError(
      "schema_invalid",
      `the model's answer was invalid ${this.config.maxAttempts} time(s); last: ${last}`,
    );
  }

  /**
   * The model picks one of `tools` through chat-completions tool calling (or `finish` when
   * the task is done). Arguments are validated with the tool's own zod schema; an invalid
   * call (unknown tool, arguments that are not JSON or do not validate) goes back to the
   * model as the tool's answer with the error, at most `maxAttempts` times in all.
   */
  async chooseTool(
    operation: string,
    messages: readonly ChatMessage[],
    tools: readonly OfferedTool[],
  ): Promise<{ choice: ToolChoice; usage: Usage }> {
    const byFn = new Map(tools.map((t) => [functionName(t.name), t]));
    const defs: OpenAI.Chat.Completions.ChatCompletionTool[] = [
      ...tools.map((t) => ({
        type: "function" as const,
        function: {
          name: functionName(t.name),
          description: t.description,
          parameters: t.parameters,
          ...(this.config.structuredOutputs && strictCompatible(t.parameters)
            ? { strict: true }
            : {}),
        },
      })),
      {
        type: "function",
        function: {
          name: FINISH,
          description: "Call when the task is complete and no further tool call is needed.",
          parameters: {
            type: "object",
            properties: { summary: { type: "string" } },
            required: ["summary"],
            additionalProperties: false,
          },
        },
      },
    ];
    const convo: OpenAI.Chat.Completions.ChatCompletionMessageParam[] = messages.map((m) => ({
      role: m.role,
      content: m.content,
    }));
    const total: Usage = { inputTokens: 0, outputTokens: 0, costUsd: 0 };
    let last = "";
    for (let attempt = 0; attempt < this.config.maxAttempts; attempt++) {
      const { message, usage } = await this.#complete(operation, {
        messages: convo,
        tools: defs,
        tool_choice: "required",
      });
      addUsage(total, usage);
      const calls = (message.tool_calls ?? []).filter((c) => c.type === "function");
      // The tool to call; `finish_task` beside it says this call completes the task.
      const call = calls.find((c) => c.function.name !== FINISH) ?? calls[0];
      if (!call) {
        last = "no tool was called";
        convo.push({ role: "assistant", content: message.content ?? "" });
        convo.push({
          role: "user",
          content: `Your answer was refused: ${last}. Call exactly one of the offered tools, or ${FINISH}.`,
        });
        continue;
      }
      const rationale = (message.content ?? "").trim();
      const r = checkCall(call.function.name, call.function.arguments, byFn);
      if (r.ok) {
        const finishing = calls.some((c) => c.function.name === FINISH);
        return {
          choice:
            r.choice.kind === "call"
              ? { ...r.choice, rationale, last: finishing }
              : { ...r.choice, rationale },
          usage: total,
        };
      }
      last = r.error;
      convo.push({ role: "assistant", content: message.content ?? null, tool_calls: [call] });
      convo.push({
        role: "tool",
        tool_call_id: call.id,
        content: JSON.stringify({ error: r.error }),
      });
    }
    throw new ValidationError(
      "schema_invalid",
      `the model's tool call was invalid ${this.config.maxAttempts} time(s); last: ${last}`,
    );
  }
}

/** A tool as a model is offered it. */
export interface OfferedTool {
  name: string;
  description: string;
  /** JSON Schema of the arguments (zod 4: z.toJSONSchema of the tool's input). */
  parameters: Record<string, unknown>;
  /** The arguments are validated with this, not with what the model says they are. */
  input: z.ZodType;
}

export type ToolChoice =
  | {
      kind: "call";
      tool: string;
      args: Record<string, unknown>;
      rationale: string;
      /** The model called finish_task beside it: this call completes the task. */
      last: boolean;
    }
  | { kind: "finish"; summary: string; rationale: string };

/** The function the model calls to say the task is done. */
export const FINISH = "finish_task";

/** Function names allow letters, digits, '_' and '-': a tool's dots become "__". */
export function functionName(tool: string): string {
  return tool.replace(/\./g, "__");
}

/**
 * Pure: a tool call from the model, checked. The one place a model's tool call becomes a
 * step: the tool must be one offered, the arguments JSON that the tool's schema accepts.
 */
export function checkCall(
  fn: string,
  rawArgs: string,
  offered: ReadonlyMap<string, OfferedTool>,
):
  | {
      ok: true;
      choice:
        | { kind: "call"; tool: string; args: Record<string, unknown> }
        | { kind: "finish"; summary: string };
    }
  | { ok: false; error: string } {
  let args: unknown;
  try {
    args = rawArgs.trim() === "" ? {} : JSON.parse(rawArgs);
  } catch {
    return { ok: false, error: `the arguments of ${fn} are not JSON: ${rawArgs.slice(0, 120)}` };
  }
  if (fn === FINISH) {
    const summary = (args as { summary?: unknown } | null)?.summary;
    return {
      ok: true,
      choice: { kind: "finish", summary: typeof summary === "string" ? summary : "" },
    };
  }
  const tool = offered.get(fn);
  if (!tool)
    return {
      ok: false,
      error: `no tool named ${fn}; offered: ${[...offered.keys(), FINISH].join(", ")}`,
    };
  const r = tool.input.safeParse(args);
  if (!r.success)
    return {
      ok: false,
      error: `arguments for ${fn} are invalid: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
    };
  return {
    ok: true,
    choice: { kind: "call", tool: tool.name, args: args as Record<string, unknown> },
  };
}

/**
 * Pure: whether a JSON Schema meets strict mode's rules (every object closed, every property
 * required), so `strict: true` is only asked where the server can honour it.
 */
export function strictCompatible(schema: unknown): boolean {
  if (schema === null || typeof schema !== "object") return true;
  const s = schema as Record<string, unknown>;
  if (s["type"] === "object") {
    const props = (s["properties"] ?? {}) as Record<string, unknown>;
    const required = new Set((s["required"] as string[] | undefined) ?? []);
    if (s["additionalProperties"] !== false) return false;
    if (Object.keys(props).some((k) => !required.has(k))) return false;
  }
  return Object.values(s).every((v) =>
    Array.isArray(v) ? v.every(strictCompatible) : strictCompatible(v),
  );
}

function parseAnswer<S extends z.ZodType>(
  text: string,
  schema: S,
): { ok: true; value: z.infer<S> } | { ok: false; error: string } {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return { ok: false, error: `the answer is not JSON: ${text.slice(0, 120)}` };
  }
  const parsed = schema.safeParse(raw);
  return parsed.success
    ? { ok: true, value: parsed.data }
    : {
        ok: false,
        error: `the answer does not match the expected shape: ${z.prettifyError(parsed.error)}`,
      };
}

function addUsage(total: Usage, u: Usage): void {
  total.inputTokens += u.inputTokens;
  total.outputTokens += u.outputTokens;
  total.costUsd += u.costUsd;
}
