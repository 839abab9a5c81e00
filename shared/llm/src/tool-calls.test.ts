import { describe, expect, it } from "vitest";
import { z } from "zod";
import { checkCall, FINISH, functionName, strictCompatible, type OfferedTool } from "./index.js";

const transfer: OfferedTool = {
  name: "ledger.transfer",
  description: "move money",
  parameters: {},
  input: z.object({ from: z.string(), to: z.string(), amount: z.number().positive() }).strict(),
};
const offered = new Map([[functionName(transfer.name), transfer]]);

describe("model tool calls", () => {
  it.each([
    [
      "a valid call",
      "ledger__transfer",
      '{"from":"a","to":"b","amount":5}',
      "call ledger.transfer",
    ],
    ["finish", FINISH, '{"summary":"done"}', "finish"],
    ["empty arguments to finish", FINISH, "", "finish"],
    ["an unknown tool", "ledger__drain", "{}", /no tool named ledger__drain/],
    ["arguments that are not JSON", "ledger__transfer", "{from: a", /not JSON/],
    [
      "arguments the schema refuses",
      "ledger__transfer",
      '{"from":"a","to":"b","amount":-1}',
      /amount/,
    ],
    ["an extra argument", "ledger__transfer", '{"from":"a","to":"b","amount":1,"x":1}', /invalid/],
  ])("%s", (_n, fn, args, want) => {
    const r = checkCall(fn, args, offered);
    if (typeof want === "string") {
      expect(r.ok).toBe(true);
      if (r.ok)
        expect(r.choice.kind === "call" ? `call ${r.choice.tool}` : r.choice.kind).toBe(want);
    } else {
      expect(r.ok).toBe(false);
      if (!r.ok) expect(r.error).toMatch(want);
    }
  });

  it.each([
    [
      "closed, all required",
      {
        type: "object",
        properties: { a: { type: "string" } },
        required: ["a"],
        additionalProperties: false,
      },
      true,
    ],
    [
      "an optional property",
      { type: "object", properties: { a: {} }, required: [], additionalProperties: false },
      false,
    ],
    ["open object", { type: "object", properties: {}, required: [] }, false],
    [
      "nested open object",
      {
        type: "object",
        properties: { o: { type: "object", properties: {} } },
        required: ["o"],
        additionalProperties: false,
      },
      false,
    ],
  ])("strict mode: %s", (_n, schema, ok) => {
    expect(strictCompatible(schema)).toBe(ok);
  });
});
