import { describe, expect, it } from "vitest";
import { POSTCONDITIONS_UNREADABLE, failedAfter, verdictOf } from "./verifier.js";

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

describe("failedAfter", () => {
  it.each([
    // [event waited for before, event handled, how its handling ended, waited for after]
    [undefined, 7, "handled", undefined], // nothing failed
    [undefined, 7, "retried", 7], // a first failure holds the run's later events
    [undefined, 7, "refused", undefined], // refused for good: it will not come back
    [7, 7, "handled", undefined], // the redelivery went through: the run goes on
    [7, 7, "retried", 7], // the redelivery failed again (say, re-reading the run timed out): still held
    [7, 7, "refused", undefined], // refused on its redelivery: it will not come back
    [7, 5, "handled", 7], // an earlier event handled: the later failure still holds
    [7, 5, "retried", 5], // an earlier event failed too: the earliest holds
    [7, 5, "refused", 7],
  ] as const)("waiting for %s, event %i %s: waiting for %s", (failed, seq, outcome, after) => {
    expect(failedAfter(failed, seq, outcome)).toBe(after);
  });
});
