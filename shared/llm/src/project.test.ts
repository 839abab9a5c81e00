import { describe, expect, it } from "vitest";
import { maskText, project } from "./index.js";

describe("llm projection", () => {
  it("llm - projection drops secrets by key and masks personal data by shape", () => {
    const p = JSON.stringify(
      project({
        account: "alice",
        amount: 5,
        apiKey: "sk-live-abcdef123456",
        nested: {
          password: "hunter2",
          note: "mail jane.doe@example.com or +44 20 7946 0958",
          iban: "GB33BUKB20201555555555",
        },
        cards: ["4111 1111 1111 1111"],
      }),
    );
    for (const leak of ["sk-live", "hunter2", "jane.doe", "7946", "GB33BUKB", "4111"])
      expect(p).not.toContain(leak);
    expect(p).toContain("alice");
    expect(p).toContain("[email]");
    expect(maskText("token sk-abcdefghijkl here")).toBe("token [secret] here");
  });

  it("project - a sealed personal value (docs/privacy.md) reaches a model as a placeholder naming its subject, never as ciphertext", () => {
    const token = "pii:v1:c-7:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
    expect(project({ subject: "c-7", name: token, list: [token] })).toEqual({
      subject: "c-7",
      name: "[personal data of c-7]",
      list: ["[personal data of c-7]"],
    });
  });
});
