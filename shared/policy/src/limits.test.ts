import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse, stringify } from "yaml";
import { describe, expect, it } from "vitest";
import { MAX_FRAME_BYTES, argsRefOf, canonicalBytes } from "@trias/protocol";
import {
  DEFAULT_MAX_ARGUMENT_BYTES,
  PolicyError,
  SHIPPED_POLICY_DIR,
  checkArgumentSize,
  loadPolicy,
  maxArgumentBytes,
  parsePolicy,
} from "./index.js";

const devFile = join(SHIPPED_POLICY_DIR, "dev.yaml");
const dev = loadPolicy(devFile);
const MiB = 1024 * 1024;

function devWith(limits: unknown) {
  const doc = parse(readFileSync(devFile, "utf8")) as Record<string, unknown>;
  doc["limits"] = limits;
  return parsePolicy(stringify(doc), "limits.yaml");
}
const bounded = devWith({ maxArgumentBytes: MiB });

/** A reference that declares `bytes` (its digest does not matter to the bound). */
const refOf = (bytes: number) => ({ ...argsRefOf(canonicalBytes({ a: 1 })), bytes });

describe("argument size bound (pure)", () => {
  // [name, policy, arguments, refused]
  const CASES: [string, typeof dev, unknown, RegExp | null][] = [
    ["inline arguments are never judged by size", bounded, { blob: "x".repeat(200_000) }, null],
    ["a reference under the default", dev, refOf(DEFAULT_MAX_ARGUMENT_BYTES), null],
    [
      "one byte over the default",
      dev,
      refOf(DEFAULT_MAX_ARGUMENT_BYTES + 1),
      /4194305 bytes, over the dev policy's limits.maxArgumentBytes of 4194304/,
    ],
    ["a reference at the policy's own bound", bounded, refOf(MiB), null],
    ["over the policy's own bound", bounded, refOf(MiB + 1), /over the dev policy's .* of 1048576/],
    [
      "an object that only looks like a reference is inline",
      bounded,
      { $ref: "x", bytes: 9e9 },
      null,
    ],
  ];
  it.each(CASES)("limits - %s", (_name, policy, args, refused) => {
    const r = checkArgumentSize(policy, args);
    if (refused === null) expect(r).toBeNull();
    else expect(r).toMatch(refused);
  });

  it("limits - a policy without limits keeps its digest and gets the documented default", () => {
    expect(dev.doc.limits).toBeUndefined();
    expect(maxArgumentBytes(dev)).toBe(4 * MiB);
    expect(maxArgumentBytes(devWith({}))).toBe(4 * MiB);
    expect(bounded.digest).not.toBe(dev.digest);
  });

  it.each([
    ["below a frame", { maxArgumentBytes: MAX_FRAME_BYTES - 1 }],
    ["over the ceiling", { maxArgumentBytes: 65 * MiB }],
    ["an unknown key", { maxArgBytes: MiB }],
  ])("limits - a bound %s is refused when the policy loads", (_name, limits) => {
    expect(() => devWith(limits)).toThrow(PolicyError);
  });
});
