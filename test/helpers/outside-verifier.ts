/**
 * A minimal receipt verifier written from docs/receipts.md alone, as an outside auditor in
 * another language would: its own msgpack decoder, node:crypto for SHA-256 and Ed25519, no
 * Trias package. The vectors test checks it agrees with Trias on docs/vectors/, which is
 * what shows the specification suffices.
 */
import { createHash, createPublicKey, verify } from "node:crypto";

type V = null | boolean | number | string | Uint8Array | V[] | { [k: string]: V };

/** msgpack, as much as the spec's values use (spec: "Encoding"). */
export function unpack(buf: Uint8Array): V {
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let i = 0;
  const need = (n: number) => {
    if (i + n > buf.length) throw new Error("truncated msgpack");
  };
  const bytes = (n: number) => {
    need(n);
    const b = buf.subarray(i, i + n);
    i += n;
    return b;
  };
  const str = (n: number) => new TextDecoder("utf-8", { fatal: true }).decode(bytes(n));
  const u = (n: 1 | 2 | 4 | 8): number => {
    need(n);
    const v =
      n === 1
        ? dv.getUint8(i)
        : n === 2
          ? dv.getUint16(i)
          : n === 4
            ? dv.getUint32(i)
            : Number(dv.getBigUint64(i));
    i += n;
    return v;
  };
  const s = (n: 1 | 2 | 4 | 8): number => {
    need(n);
    const v =
      n === 1
        ? dv.getInt8(i)
        : n === 2
          ? dv.getInt16(i)
          : n === 4
            ? dv.getInt32(i)
            : Number(dv.getBigInt64(i));
    i += n;
    return v;
  };
  const arr = (n: number): V[] => Array.from({ length: n }, () => one());
  const map = (n: number) => {
    const o: Record<string, V> = {};
    for (let k = 0; k < n; k++) {
      const key = one();
      if (typeof key !== "string") throw new Error("map key is not a string");
      o[key] = one();
    }
    return o;
  };
  const one = (): V => {
    const t = u(1);
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 0x100;
    if ((t & 0xf0) === 0x80) return map(t & 0x0f);
    if ((t & 0xf0) === 0x90) return arr(t & 0x0f);
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    switch (t) {
      case 0xc0:
        return null;
      case 0xc2:
        return false;
      case 0xc3:
        return true;
      case 0xc4:
        return bytes(u(1));
      case 0xc5:
        return bytes(u(2));
      case 0xc6:
        return bytes(u(4));
      case 0xca: {
        need(4);
        const v = dv.getFloat32(i);
        i += 4;
        return v;
      }
      case 0xcb: {
        need(8);
        const v = dv.getFloat64(i);
        i += 8;
        return v;
      }
      case 0xcc:
        return u(1);
      case 0xcd:
        return u(2);
      case 0xce:
        return u(4);
      case 0xcf:
        return u(8);
      case 0xd0:
        return s(1);
      case 0xd1:
        return s(2);
      case 0xd2:
        return s(4);
      case 0xd3:
        return s(8);
      case 0xd9:
        return str(u(1));
      case 0xda:
        return str(u(2));
      case 0xdb:
        return str(u(4));
      case 0xdc:
        return arr(u(2));
      case 0xdd:
        return arr(u(4));
      case 0xde:
        return map(u(2));
      case 0xdf:
        return map(u(4));
      default:
        throw new Error(`msgpack type 0x${t.toString(16)} is not used by Trias`);
    }
  };
  const v = one();
  if (i !== buf.length) throw new Error("trailing bytes after the msgpack value");
  return v;
}

const sha = (...parts: (string | Uint8Array)[]) => {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
};
const u64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

interface Key {
  kid: string;
  role: string;
  x: string;
  status: string;
  addedAt?: number | undefined;
  revokedAt?: number | undefined;
}

/** Spec "Keys and their time of effect". */
function inEffect(k: Key, at: number): boolean {
  if (k.addedAt !== undefined && at < k.addedAt) return false;
  if (k.status === "active") return true;
  return k.revokedAt !== undefined && at < k.revokedAt;
}

export interface OutsideResult {
  ok: boolean;
  head: string;
  links: string[];
  refused: number[];
  after: { seq: number; kind: string; verdict: "late" | "record" | "tampering" }[];
  keySetDigest: string;
  anchor: string | null;
  problems: string[];
}

export function verifyExport(file: Uint8Array, registry: { keys: Key[] }): OutsideResult {
  const problems: string[] = [];
  const x = unpack(file) as {
    format: string;
    run: string;
    events: { seq: number; subject: string; data: Uint8Array; timestampMs: number }[];
    checkpoint?: string;
  };
  if (x.format !== "trias-trace/v1") throw new Error("not a trias-trace/v1 export");
  const run = x.run;
  const keys = new Map(registry.keys.map((k) => [k.kid, k]));
  // Spec "Frame" and "Envelope": open each event, or say why not.
  const opened = x.events.map((e) => {
    try {
      const f = unpack(e.data) as V[];
      if (!Array.isArray(f) || f.length !== 4 || f[0] !== 1) throw new Error("not a frame");
      const [, kid, sig, payload] = f as [number, string, Uint8Array, Uint8Array];
      const k = keys.get(kid);
      if (!k) throw new Error("unknown key");
      if (!inEffect(k, e.timestampMs)) throw new Error("key not in effect");
      const pub = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: k.x }, format: "jwk" });
      if (!verify(null, payload, pub, sig)) throw new Error("bad signature");
      const env = unpack(payload) as Record<string, V>;
      if (env["sender"] !== kid) throw new Error("sender is not the key id");
      if (env["role"] !== k.role) throw new Error("role is not the key's role");
      return { e, env };
    } catch (err) {
      return { e, env: null, why: (err as Error).message };
    }
  });
  const refused = new Set<number>();
  for (const o of opened) {
    const b = o.env?.["body"] as Record<string, V> | undefined;
    if (
      o.env?.["kind"] === "message_rejected" &&
      o.env["run"] === run &&
      typeof b?.["seq"] === "number"
    )
      refused.add(b["seq"]);
  }
  const subjectOk = (o: (typeof opened)[number]) => {
    const parts = o.e.subject.split(".");
    if (parts.length !== 4 || parts[0] !== "trias" || parts[3] !== run) return false;
    if (!o.env) return true;
    const token = parts[2] === "tier_assigned_review" ? "tier_assigned" : parts[2];
    return parts[1] === o.env["role"] && token === o.env["kind"] && o.env["run"] === run;
  };
  const closing = opened.find((o) => o.env?.["kind"] === "run_closed" && subjectOk(o));
  if (!closing) throw new Error("no run_closed");
  const receipt = (closing.env!["body"] as Record<string, V>)["receipt"] as Record<string, V>;
  const lastSeq = receipt["lastSeq"] as number;
  // Spec "Chain" and "Coverage".
  let h: Buffer = sha(`trias-receipt-v1|${run}`);
  const links: string[] = [];
  let prev = -1;
  const ids = new Set<string>();
  for (const o of opened.filter((q) => q.e.seq <= lastSeq)) {
    if (o.e.seq <= prev) problems.push(`seq ${o.e.seq}: out of order`);
    prev = o.e.seq;
    if (!subjectOk(o)) problems.push(`seq ${o.e.seq}: not this run's subject`);
    if (!o.env && !refused.has(o.e.seq))
      problems.push(`seq ${o.e.seq}: does not verify, not refused`);
    if (o.env) ids.add(o.env["id"] as string);
    h = sha(h, u64(o.e.seq), sha(o.e.subject), sha(o.e.data));
    links.push(h.toString("hex"));
  }
  const head = links.at(-1) ?? "";
  if (head !== receipt["head"]) problems.push("head differs");
  if (links.length !== receipt["events"]) problems.push("event count differs");
  const signed = receipt["links"] as string[] | undefined;
  if (signed) {
    const at = signed.findIndex((l, k) => l !== links[k]);
    if (at >= 0) problems.push(`link ${at + 1} differs`);
  }
  // Spec "After the receipt": the minimal rule.
  const after: OutsideResult["after"] = [];
  for (const o of opened.filter((q) => q.e.seq > lastSeq && q !== closing)) {
    const kind = (o.env?.["kind"] as string) ?? "unknown";
    const benign =
      o.env !== null &&
      subjectOk(o) &&
      !ids.has(o.env["id"] as string) &&
      (kind === "verdict" || kind === "message_rejected");
    if (o.env) ids.add(o.env["id"] as string);
    after.push({
      seq: o.e.seq,
      kind,
      verdict: benign ? (kind === "verdict" ? "late" : "record") : "tampering",
    });
    if (!benign) problems.push(`seq ${o.e.seq}: after the receipt`);
  }
  // Spec "Key-set digest".
  const ks = receipt["keySet"] as { at: number; digest: string };
  const lines = registry.keys
    .filter((k) => inEffect(k, ks.at))
    .sort((a, b) => Buffer.compare(Buffer.from(a.kid), Buffer.from(b.kid)))
    .map((k) => `${k.kid}\t${k.role}\t${k.x}\n`)
    .join("");
  const keySetDigest = sha(`trias-keyset-v1\n${lines}`).toString("hex");
  if (keySetDigest !== ks.digest) problems.push("key set differs");
  // Spec "The checkpoint": a compact JWS by a verifier key, and its anchor.
  let anchor: string | null = null;
  if (x.checkpoint) {
    const [hd, pl, sg] = x.checkpoint.split(".") as [string, string, string];
    const header = JSON.parse(Buffer.from(hd, "base64url").toString()) as {
      alg: string;
      kid: string;
    };
    const k = keys.get(header.kid);
    const pub =
      k && createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: k.x }, format: "jwk" });
    if (
      header.alg !== "EdDSA" ||
      !k ||
      k.role !== "verifier" ||
      !pub ||
      !verify(null, Buffer.from(`${hd}.${pl}`), pub, Buffer.from(sg, "base64url"))
    )
      problems.push("checkpoint signature");
    const cp = JSON.parse(Buffer.from(pl, "base64url").toString()) as {
      n: number;
      run: string;
      closeSeq: number;
      prev: string;
      anchor: string;
      receipt: { head: string };
    };
    anchor = sha(
      "trias-anchor-v1|",
      Buffer.from(cp.prev, "hex"),
      u64(cp.n),
      sha(cp.run),
      u64(cp.closeSeq),
      Buffer.from(cp.receipt.head, "hex"),
    ).toString("hex");
    if (
      anchor !== cp.anchor ||
      cp.receipt.head !== head ||
      cp.run !== run ||
      cp.closeSeq !== closing.e.seq
    )
      problems.push("checkpoint content");
  }
  return {
    ok: problems.length === 0,
    head,
    links,
    refused: [...refused].sort((a, b) => a - b),
    after,
    keySetDigest,
    anchor,
    problems,
  };
}
