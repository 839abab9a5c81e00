import type { KV } from "@nats-io/kv";
import { z } from "zod";
import {
  ValidationError,
  type Check,
  type JsonObject,
  type JsonValue,
  type Role,
} from "@trias/protocol";
import type { Operation } from "@trias/policy";

/** A business-rule failure inside a tool: the tool ran and said no. Not retryable as is. */
export class ToolRefusal extends ValidationError {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super("tool_failed", message, options);
  }
}

/** Objects an invocation touches: a fixed count, or the length of an array argument. */
export type ObjectsSpec = { count: number } | { countOf: string };

/** What a process gives a pack when it opens it (executor and verifier only). */
export interface PackHost {
  /** The role of the process: a verifier's resources should only read. */
  role: Role;
  /** A JetStream KV bucket, with this process's bus credentials. */
  kv(bucket: string): Promise<KV>;
}

export interface EffectContext {
  /** `<run>:<step>:<attempt>`: the idempotency key of this effect. */
  effectId: string;
  attempt: number;
}

export interface ToolContext<R = unknown> extends EffectContext {
  /** What the pack's `open` returned in this process. */
  resources: R;
}

export interface CompensationOrder {
  tool: string;
  args: JsonObject;
}

/** A tool as its author writes it: typed input and output, facts for the policy, effects. */
export interface ToolDefinition<I, O extends JsonValue, R = unknown> {
  /** `<pack>.<verb>`, e.g. `notes.append`; the policy rates it under this name. */
  name: string;
  description: string;
  input: z.ZodType<I>;
  /** The result's shape; a result that does not match fails the step. */
  output?: z.ZodType<O>;
  /** Defaults for `trias policy scaffold`; the policy's entry is what routes. */
  op: Operation;
  domains: readonly string[];
  objects: ObjectsSpec;
  /** Running it twice with the same effect id applies it once (or changes nothing more). */
  idempotent: boolean;
  /** Apply the effect. Throw ToolRefusal when the world says no. */
  run(args: I, ctx: ToolContext<R>): Promise<O>;
  /** The order that undoes this effect, or null when it cannot be undone (escalate instead). */
  compensate?(args: I, result: O): CompensationOrder | null;
  /** Read-only checks of the world after the effect, run by the verifier. */
  verify?(args: I, result: O, ctx: ToolContext<R>): Promise<Check[]>;
}

/** A tool with its types erased: what a pack holds and the catalogue serves. */
export interface Tool {
  readonly name: string;
  readonly description: string;
  readonly input: z.ZodType;
  /** The input as JSON Schema: what a model or an MCP client is shown. */
  readonly jsonSchema: Record<string, unknown>;
  readonly output: z.ZodType | undefined;
  readonly op: Operation;
  readonly domains: readonly string[];
  readonly objects: ObjectsSpec;
  readonly idempotent: boolean;
  run(args: JsonObject, ctx: ToolContext): Promise<JsonValue>;
  compensate(args: JsonObject, result: JsonValue): CompensationOrder | null;
  verify(args: JsonObject, result: JsonValue, ctx: ToolContext): Promise<Check[]>;
}

const TOOL_NAME = /^[a-z][a-z0-9_-]*(\.[a-zA-Z0-9_-]+)+$/;

/**
 * Define one tool. Arguments are parsed with `input` before `run`, `compensate` and `verify`
 * see them; the result is checked against `output` when one is given.
 */
export function defineTool<I, O extends JsonValue, R = unknown>(
  def: ToolDefinition<I, O, R>,
): Tool {
  if (!TOOL_NAME.test(def.name))
    throw new ValidationError(
      "config_invalid",
      `tool name "${def.name}" must be <pack>.<verb> (lowercase pack, e.g. "notes.append")`,
    );
  const parse = (args: JsonObject): I => {
    const r = def.input.safeParse(args);
    if (!r.success)
      throw new ToolRefusal(
        `arguments for ${def.name} are invalid: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
      );
    return r.data;
  };
  return {
    name: def.name,
    description: def.description,
    input: def.input,
    jsonSchema: z.toJSONSchema(def.input, { io: "input", unrepresentable: "any" }),
    output: def.output,
    op: def.op,
    domains: def.domains,
    objects: def.objects,
    idempotent: def.idempotent,
    async run(args, ctx) {
      const out = await def.run(parse(args), ctx as ToolContext<R>);
      if (def.output) {
        const r = def.output.safeParse(out);
        if (!r.success)
          throw new ToolRefusal(
            `${def.name} returned a result that does not match its output schema: ${z.prettifyError(r.error).replace(/\n/g, "; ")}`,
          );
      }
      return out;
    },
    compensate(args, result) {
      if (!def.compensate) return null;
      const r = def.input.safeParse(args);
      return r.success ? def.compensate(r.data, result as O) : null;
    },
    async verify(args, result, ctx) {
      if (!def.verify)
        return [
          {
            name: "postconditions declared",
            ok: true,
            detail: `${def.name} declares none: the tool's own success is all there is to check`,
          },
        ];
      return def.verify(parse(args), result as O, ctx as ToolContext<R>);
    },
  };
}

/** A set of tools loaded together, with the resources they share in one process. */
export interface ToolPack<R = unknown> {
  readonly kind: "trias.tool-pack";
  name: string;
  tools: readonly Tool[];
  /** Resources for the tools (a client, a bucket), opened by the executor and the verifier. */
  open?(host: PackHost): Promise<R>;
  close?(resources: R): Promise<void>;
}

export function defineToolPack<R = unknown>(pack: Omit<ToolPack<R>, "kind">): ToolPack<R> {
  if (!/^[a-z][a-z0-9_-]*$/.test(pack.name))
    throw new ValidationError(
      "config_invalid",
      `pack name "${pack.name}" must be lowercase letters, digits, '_' and '-'`,
    );
  const seen = new Set<string>();
  for (const t of pack.tools) {
    if (seen.has(t.name))
      throw new ValidationError("config_invalid", `pack ${pack.name} defines tool ${t.name} twice`);
    seen.add(t.name);
  }
  return { kind: "trias.tool-pack", ...pack };
}

export function isToolPack(v: unknown): v is ToolPack {
  return (
    typeof v === "object" &&
    v !== null &&
    (v as { kind?: unknown }).kind === "trias.tool-pack" &&
    Array.isArray((v as { tools?: unknown }).tools)
  );
}
