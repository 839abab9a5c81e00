import { decode, encode } from "./codec.js";
import { ValidationError } from "./errors.js";

/**
 * A signed frame is what travels on the bus: `[version, keyId, signature, payload]`, msgpack.
 * `payload` is the msgpack-encoded envelope, and the signature covers exactly those bytes, so
 * a receiver can check it before it decodes (or trusts) anything inside.
 */
export interface Frame {
  kid: string;
  sig: Uint8Array;
  payload: Uint8Array;
}

export const FRAME_VERSION = 1;
/** Default ceiling for one frame; larger frames are refused before any decoding. */
export const MAX_FRAME_BYTES = 256 * 1024;

export function encodeFrame(f: Frame): Uint8Array {
  return encode([FRAME_VERSION, f.kid, f.sig, f.payload]);
}

export function decodeFrame(bytes: Uint8Array, maxBytes = MAX_FRAME_BYTES): Frame {
  if (bytes.length > maxBytes) {
    throw new ValidationError(
      "frame_oversized",
      `frame is ${bytes.length} bytes, over the limit of ${maxBytes}; send large data by reference`,
    );
  }
  if (bytes.length === 0) {
    throw new ValidationError("frame_malformed", "empty message: expected a signed frame");
  }
  const raw = decode(bytes);
  if (!Array.isArray(raw) || raw.length !== 4) {
    // An envelope sent without a frame around it is the common way to forget signing.
    if (raw !== null && typeof raw === "object" && !Array.isArray(raw) && "kind" in raw) {
      throw new ValidationError(
        "signature_missing",
        "message is an unsigned envelope: sign it and wrap it in a frame [1, kid, sig, payload]",
      );
    }
    throw new ValidationError("frame_malformed", "expected a frame [1, kid, sig, payload]");
  }
  const [v, kid, sig, payload] = raw as unknown[];
  if (v !== FRAME_VERSION) {
    throw new ValidationError(
      "frame_malformed",
      `unsupported frame version ${String(v)}, expected ${FRAME_VERSION}`,
    );
  }
  if (typeof kid !== "string" || kid.length === 0) {
    throw new ValidationError("signature_missing", "frame has no key id");
  }
  if (!(sig instanceof Uint8Array) || sig.length === 0) {
    throw new ValidationError("signature_missing", `frame from ${kid} carries no signature`);
  }
  if (!(payload instanceof Uint8Array)) {
    throw new ValidationError("frame_malformed", "frame payload must be bytes");
  }
  return { kid, sig, payload };
}
