import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { compactVerify, importJWK, type JWK } from "jose";
import { describe, expect, it } from "vitest";
import { auditEvents, checkCheckpoint, importTrace } from "@trias/console";
import { KeyRegistry, type Jwks } from "@trias/signing";
import { REPO } from "./helpers/harness.js";
import { verifyExport } from "./helpers/outside-verifier.js";
import { buildVectors, VECTOR_RUN } from "./helpers/vectors.js";

const DIR = join(REPO, "docs", "vectors");
const FILES = {
  registry: join(DIR, "registry.jwks.json"),
  trace: join(DIR, "trace.msgpack"),
  checkpoint: join(DIR, "checkpoint.jws"),
  expected: join(DIR, "expected.json"),
};

describe("receipt test vectors (docs/vectors)", () => {
  it("vectors - the committed files are what the generator writes (regenerate: TRIAS_WRITE_VECTORS=1 pnpm exec vitest run test/vectors.test.ts)", async () => {
    const v = await buildVectors();
    const text = {
      registry: JSON.stringify(v.registry, null, 2) + "\n",
      checkpoint: v.checkpoint + "\n",
      expected: JSON.stringify(v.expected, null, 2) + "\n",
    };
    if (process.env["TRIAS_WRITE_VECTORS"] === "1") {
      mkdirSync(DIR, { recursive: true });
      writeFileSync(FILES.registry, text.registry);
      writeFileSync(FILES.trace, v.trace);
      writeFileSync(FILES.checkpoint, text.checkpoint);
      writeFileSync(FILES.expected, text.expected);
    }
    expect(readFileSync(FILES.registry, "utf8")).toBe(text.registry);
    expect(Buffer.from(readFileSync(FILES.trace)).equals(Buffer.from(v.trace))).toBe(true);
    expect(readFileSync(FILES.checkpoint, "utf8")).toBe(text.checkpoint);
    expect(readFileSync(FILES.expected, "utf8")).toBe(text.expected);
  });

  const registry = () => JSON.parse(readFileSync(FILES.registry, "utf8")) as Jwks;
  const expected = () =>
    JSON.parse(readFileSync(FILES.expected, "utf8")) as Awaited<
      ReturnType<typeof buildVectors>
    >["expected"];

  it("vectors - Trias's own audit verifies them: the expected head, the refused frame, the late verdict as a warning", () => {
    const { run, events, checkpoint } = importTrace(FILES.trace);
    expect(run).toBe(VECTOR_RUN);
    const reg = new KeyRegistry(registry());
    const report = auditEvents(reg, run, events);
    expect(report.problems).toEqual([]);
    expect(report.ok).toBe(true);
    const want = expected();
    expect(report.recomputedHead).toBe(want.receipt.head);
    expect(report.refused).toEqual(want.refused);
    expect(report.after.map((a) => ({ seq: a.seq, kind: a.kind, verdict: a.verdict }))).toEqual(
      want.after,
    );
    expect(checkCheckpoint(reg, checkpoint!, report)).toBeNull();
  });

  it("vectors - a verifier written from docs/receipts.md alone (node:crypto, its own msgpack) gets the same results", () => {
    const want = expected();
    const r = verifyExport(readFileSync(FILES.trace), registry());
    expect(r.problems).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.head).toBe(want.receipt.head);
    expect(r.links).toEqual(want.receipt.links);
    expect(r.refused).toEqual(want.refused);
    expect(r.after).toEqual(want.after);
    expect(r.keySetDigest).toBe(want.keySet.digest);
    expect(r.anchor).toBe(want.checkpoint.anchor);
  });

  it("vectors - the same outside verifier fails on one changed byte of a covered frame, and on an unrevoked-at registry", () => {
    const file = Buffer.from(readFileSync(FILES.trace));
    // The step_proposed frame's last byte sits well inside the file: find it by its bytes.
    const { events } = importTrace(FILES.trace);
    const target = Buffer.from(events[3]!.data);
    const at = file.indexOf(target) + target.length - 1;
    file[at] = (file[at] ?? 0) ^ 0x01;
    expect(verifyExport(file, registry()).ok).toBe(false);
    const reg = registry();
    for (const k of reg.keys) delete k.revokedAt;
    expect(verifyExport(readFileSync(FILES.trace), reg).problems.join()).toMatch(/not refused/);
  });

  it("vectors - the checkpoint is a JWS generic tooling verifies (jose) with the registry's JWKS entry", async () => {
    const jws = readFileSync(FILES.checkpoint, "utf8").trim();
    const header = JSON.parse(Buffer.from(jws.split(".")[0]!, "base64url").toString()) as {
      kid: string;
    };
    const key = (registry().keys as JWK[]).find((k) => k.kid === header.kid)!;
    const { payload } = await compactVerify(jws, await importJWK(key, "EdDSA"));
    expect(JSON.parse(new TextDecoder().decode(payload))).toMatchObject({
      run: VECTOR_RUN,
      anchor: expected().checkpoint.anchor,
      receipt: { head: expected().receipt.head },
    });
  });
});
