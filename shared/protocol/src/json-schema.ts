import { z } from "zod";
import * as S from "./schemas.js";

const bytes = {
  type: "string",
  contentEncoding: "base64",
  description: "msgpack bin: a signed frame",
};

/** JSON Schema for every message kind and body, generated from the zod schemas. */
export function messageJsonSchemas(): Record<string, unknown> {
  const opts = {
    target: "draft-2020-12" as const,
    unrepresentable: "any" as const,
    override: (ctx: { zodSchema: unknown; jsonSchema: Record<string, unknown> }) => {
      if (ctx.zodSchema === S.Bytes) Object.assign(ctx.jsonSchema, bytes);
    },
  };
  const out: Record<string, unknown> = {
    "message.schema.json": z.toJSONSchema(S.Message, opts),
  };
  for (const option of S.Message.options) {
    out[`${option.shape.kind.value}.schema.json`] = z.toJSONSchema(option, opts);
  }
  return out;
}
