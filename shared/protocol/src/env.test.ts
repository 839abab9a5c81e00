import { describe, expect, it } from "vitest";
import { z } from "zod";
import { ValidationError } from "./errors.js";
import { envEnum, envNonNegative, envPositiveInt, envText, readEnv } from "./env.js";

const Schema = z.object({
  WAIT_MS: envPositiveInt(30_000, "milliseconds"),
  PRICE: envNonNegative(0, "US dollars"),
  MODE: envEnum(["on", "off"]),
  NAME: envText,
  NATS_PASSWORD: envText,
  SECRET_MS: envPositiveInt(1, "milliseconds"),
});

describe("environment schema", () => {
  const good: [string, Record<string, string>, Record<string, unknown>][] = [
    ["unset: every default", {}, { WAIT_MS: 30_000, PRICE: 0, SECRET_MS: 1 }],
    ["empty counts as unset", { WAIT_MS: "", MODE: " ", NAME: "" }, { WAIT_MS: 30_000 }],
    ["a whole number, trimmed", { WAIT_MS: " 1500 " }, { WAIT_MS: 1500 }],
    ["a price with decimals", { PRICE: "0.15" }, { PRICE: 0.15 }],
    ["a listed word", { MODE: "off" }, { MODE: "off" }],
    ["text as given", { NAME: "reviewer-2" }, { NAME: "reviewer-2" }],
  ];
  for (const [what, env, want] of good)
    it(`environment schema - accepts ${what}`, () => {
      expect(readEnv(Schema, env)).toMatchObject(want);
    });

  const bad: [string, Record<string, string>, RegExp][] = [
    [
      "letters for a duration",
      { WAIT_MS: "abc" },
      /WAIT_MS="abc" must be a whole number of milliseconds greater than 0 \(default 30000\)/,
    ],
    ["zero", { WAIT_MS: "0" }, /WAIT_MS="0" must be greater than 0/],
    ["a fraction of a millisecond", { WAIT_MS: "1.5" }, /WAIT_MS="1.5" must be a whole number/],
    ["a unit suffix", { WAIT_MS: "30s" }, /WAIT_MS="30s" must be a whole number/],
    ["a negative price", { PRICE: "-1" }, /PRICE="-1" must be a number of US dollars, 0 or more/],
    ["an unlisted word", { MODE: "yes" }, /MODE="yes" must be one of on, off/],
    ["two wrong at once, both named", { WAIT_MS: "x", MODE: "y" }, /WAIT_MS="x".*; MODE="y"/],
  ];
  for (const [what, env, message] of bad)
    it(`environment schema - refuses ${what}, naming the variable`, () => {
      const e = (() => {
        try {
          readEnv(Schema, env);
        } catch (err) {
          return err;
        }
        return undefined;
      })();
      expect(e).toBeInstanceOf(ValidationError);
      expect((e as ValidationError).code).toBe("config_invalid");
      expect((e as ValidationError).message).toMatch(message);
    });

  it("environment schema - does not repeat the value of a secret variable", () => {
    expect(() => readEnv(Schema, { SECRET_MS: "hunter2" })).toThrow(
      /SECRET_MS=\(hidden\) must be a whole number/,
    );
  });
});
