import { hash } from "node:crypto";
import { Packr } from "msgpackr";
import { z } from "zod";
import { ValidationError } from "./errors.js";
import { Message, type Kind, type MessageOf } from "./schemas.js";

// Records and structured clones would make the bytes depend on encoder state; plain maps
// keep every encoding a pure function of the value, which signatures and digests need.
const packr = new Packr({
  useRecords: false,
  mapsAsObjects: true,
  moreTypes: false,
  int64AsType: "number",
});

export function encode(value: unknown): Uint8Array {
  return packr.pack(value);
}

export function decode(bytes: Uint8Array): unknown {
  try {
    return packr.unpack(bytes);
  } catch (e) {
    throw new ValidationError("frame_malformed", "the bytes are not valid msgpack", { cause: e });
  }
}

function sortKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value instanceof Uint8Array) return value;
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const k of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[k];
      if (v !== undefined) out[k] = sortKeys(v);
    }
    return out;
  }
  return value;
}

/** Encoding with object keys sorted, so equal values give equal bytes whatever their key order. */
export function canonicalBytes(value: unknown): Uint8Array {
  return packr.pack(sortKeys(value));
}

/**
 * The one argument-equality rule: two values are the same when their canonical encodings
 * are byte for byte equal (key order does not matter, types do: 1 and "1" differ).
 */
export function canonicalEqual(a: unknown, b: unknown): boolean {
  const x = canonicalBytes(a);
  const y = canonicalBytes(b);
  if (x.length !== y.length) return false;
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

export function sha256Hex(bytes: Uint8Array | string): string {
  return hash("sha256", bytes, "hex");
}

/**
 * How one signed frame names another without embedding it (docs/receipts.md, 3): the
 * SHA-256 of its stored bytes, in hex. The frame it names is in the same run's trace.
 */
export function frameRef(frame: Uint8Array): string {
  return sha256Hex(frame);
}

export interface ProposalBinding {
  tool: string;
  args: Record<string, unknown>;
  run: string;
  step: number;
  attempt: number;
  policyDigest: string;
}

/**
 * The digest that tier assignments, approvals and executions bind to. It covers the exact
 * action (tool and arguments), where it sits (run, step, attempt) and the policy it was
 * judged under, so an approval of one action can never authorise another.
 */
export function proposalDigest(b: ProposalBinding): string {
  return sha256Hex(
    canonicalBytes({
      v: 1,
      tool: b.tool,
      args: b.args,
      run: b.run,
      step: b.step,
      attempt: b.attempt,
      policyDigest: b.policyDigest,
    }),
  );
}

/** Validate a decoded envelope against the schema; the error names every field that is wrong. */
export function parseMessage(value: unknown): Message {
  const r = Message.safeParse(value);
  if (!r.success) {
    throw new ValidationError(
      "schema_invalid",
      `message does not match the schema: ${z.prettifyError(r.error)}`,
      {
        cause: r.error,
      },
    );
  }
  return r.data;
}

export function isKind<K extends Kind>(m: Message, kind: K): m is MessageOf<K> {
  return m.kind === kind;
}
