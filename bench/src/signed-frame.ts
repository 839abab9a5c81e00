import type { SigningKey } from "@trias/signing";

/** A signed 4-hop message: the sender's 64-byte Ed25519 signature, then the payload. */
export const SIG_BYTES = 64;

export function sealFrame(key: SigningKey, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIG_BYTES + payload.length);
  out.set(key.sign(payload), 0);
  out.set(payload, SIG_BYTES);
  return out;
}

export function signatureOf(frame: Uint8Array): Uint8Array {
  return frame.subarray(0, SIG_BYTES);
}

export function payloadOf(frame: Uint8Array): Uint8Array {
  return frame.subarray(SIG_BYTES);
}
