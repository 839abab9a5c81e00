import { describe, expect, it } from "vitest";
import { readReviewerConfig } from "./config.js";
import { STAND_IN_MS } from "./reviewer.js";

describe("reviewer config", () => {
  const cases: [string, Record<string, string>, ReturnType<typeof readReviewerConfig>][] = [
    ["defaults", {}, { strategy: "rules", claims: false, standInMs: STAND_IN_MS }],
    [
      "llm reviewers claim by default",
      { TRIAS_REVIEWER_STRATEGY: "llm" },
      { strategy: "llm", claims: true, standInMs: STAND_IN_MS },
    ],
    [
      "claims forced on for rules",
      { TRIAS_REVIEW_CLAIMS: "on" },
      { strategy: "rules", claims: true, standInMs: STAND_IN_MS },
    ],
    [
      "claims off for llm",
      { TRIAS_REVIEWER_STRATEGY: "llm", TRIAS_REVIEW_CLAIMS: "off" },
      { strategy: "llm", claims: false, standInMs: STAND_IN_MS },
    ],
    [
      "a stand-in delay",
      { TRIAS_REVIEW_STANDIN_MS: "250" },
      { strategy: "rules", claims: false, standInMs: 250 },
    ],
  ];
  for (const [what, env, want] of cases)
    it(`reviewer config - ${what}`, () => {
      expect(readReviewerConfig(env)).toEqual(want);
    });

  const bad: [Record<string, string>, RegExp][] = [
    [
      { TRIAS_REVIEWER_STRATEGY: "human" },
      /TRIAS_REVIEWER_STRATEGY="human" must be one of rules, llm/,
    ],
    [{ TRIAS_REVIEW_CLAIMS: "yes" }, /TRIAS_REVIEW_CLAIMS="yes" must be one of on, off/],
    [
      { TRIAS_REVIEW_STANDIN_MS: "2s" },
      /TRIAS_REVIEW_STANDIN_MS="2s" must be a whole number of milliseconds/,
    ],
    [{ TRIAS_REVIEW_STANDIN_MS: "0" }, /TRIAS_REVIEW_STANDIN_MS="0" must be greater than 0/],
  ];
  for (const [env, message] of bad)
    it(`reviewer config - refuses ${JSON.stringify(env)}`, () => {
      expect(() => readReviewerConfig(env)).toThrow(message);
    });
});
