import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { kycRisk, screenName } from "./kyc.js";
import { isSealed, maskSealed, sealedSubject } from "@trias/protocol";
import { seal, unseal } from "./privacy.js";

describe("kyc rules", () => {
  it.each([
    ["Ilsa Marrowgate", "SAN-002"],
    ["marrowgate,  ILSA", "SAN-002"],
    ["Hélena Stormvale", "PEP-001"],
    ["Ada Lovelace", null],
    ["Ilsa", null],
  ])("kyc - screening %s matches %s", (name, id) => {
    expect(screenName(name)?.id ?? null).toBe(id);
  });

  it.each([
    [{ country: "FR", pep: false, monthlyVolume: 100 }, "low"],
    [{ country: "FR", pep: false, monthlyVolume: 10_001 }, "medium"],
    [{ country: "FR", pep: false, monthlyVolume: 50_001 }, "high"],
    [{ country: "XR", pep: false, monthlyVolume: 0 }, "high"],
    [{ country: "FR", pep: true, monthlyVolume: 0 }, "high"],
  ] as const)("kyc - risk of %o is %s", (facts, risk) => {
    expect(kycRisk(facts)).toBe(risk);
  });
});

describe("crypto-shredding tokens", () => {
  const key = randomBytes(32);
  it("privacy - a token opens with its subject's key only, and names its subject", () => {
    const t = seal(key, "c-1", "Ada Lovelace");
    expect(isSealed(t)).toBe(true);
    expect(t).not.toContain("Ada");
    expect(sealedSubject(t)).toBe("c-1");
    expect(unseal(key, t)).toBe("Ada Lovelace");
    expect(() => unseal(randomBytes(32), t)).toThrow();
    // Moved to another subject, the authenticated subject no longer matches.
    expect(() => unseal(key, t.replace("pii:v1:c-1:", "pii:v1:c-2:"))).toThrow();
  });

  it("privacy - masking shows a subject's data as personal, or as erased once its key is gone", () => {
    const t = seal(key, "c-1", "x@example.org");
    expect(maskSealed({ to: t, n: [t, 1] })).toEqual({
      to: "[personal data of c-1]",
      n: ["[personal data of c-1]", 1],
    });
    expect(maskSealed({ to: t }, new Set(["c-1"]))).toEqual({ to: "[erased]" });
  });
});
