import { describe, expect, it } from "vitest";
import { POSTCONDITIONS_UNREADABLE, verdictOf } from "./verifier.js";

const ok = (name: string) => ({ name, ok: true, detail: "ok" });
const bad = (name: string) => ({ name, ok: false, detail: "no" });
const unread = { name: POSTCONDITIONS_UNREADABLE, ok: false, detail: "source down" };

describe("verdictOf", () => {
  it("verdict - strict: unreadable postconditions are uncertain, never passed", () => {
    expect(verdictOf("ok", [ok("signature"), unread], true)).toBe("uncertain");
    expect(verdictOf("ok", [ok("signature"), unread], true, "strict")).toBe("uncertain");
  });

  it("verdict - lenient: unreadable postconditions pass when every other check does", () => {
    expect(verdictOf("ok", [ok("signature"), ok("quorum"), unread], true, "lenient")).toBe(
      "passed",
    );
  });

  it("verdict - lenient never tolerates a failed authorisation check, a wrong postcondition or a refusing tool", () => {
    expect(verdictOf("ok", [bad("quorum"), unread], true, "lenient")).toBe("uncertain");
    expect(verdictOf("ok", [ok("signature"), bad("balance moved")], false, "lenient")).toBe(
      "failed",
    );
    expect(verdictOf("error", [ok("signature"), bad("tool succeeded")], false, "lenient")).toBe(
      "failed",
    );
  });

  it("verdict - every check passing is passed under either", () => {
    for (const v of ["strict", "lenient"] as const)
      expect(verdictOf("ok", [ok("a"), ok("b")], false, v)).toBe("passed");
  });
});
