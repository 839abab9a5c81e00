import { PAYLOADS_BUCKET, isNotFound, type Bus } from "@trias/bus";
import {
  JsonObject,
  MAX_ARGUMENT_BYTES_CEILING,
  ValidationError,
  decode,
  isArgsRef,
  payloadChunks,
  payloadKeys,
  refDigest,
  sha256Hex,
  wireArgs,
  type ArgsRef,
} from "@trias/protocol";

/**
 * The payloads bucket of a bus, opened (and looked for) on first use.
 */
export function busPayloads(bus: Bus): Payloads {
  return new Payloads(async () => {
    const kv = await bus.kv(PAYLOADS_BUCKET);
    // Opening a bucket does not look for it: ask, so a missing one is named as such.
    await kv.status();
    return kv;
  });
}

/** The reads and writes the payloads bucket is used with (a KV bucket of @nats-io/kv). */
export interface PayloadBucket {
  get(key: string): Promise<{ operation: string; value: Uint8Array } | null>;
  put(key: string, value: Uint8Array): Promise<number>;
}

/**
 * Step arguments carried by reference (docs/security.md, "Bounded messages end to end"): the
 * bucket is opened on first use, so a process whose steps are all small never touches it.
 */
export class Payloads {
  readonly #open: () => Promise<PayloadBucket>;
  #bucket: Promise<PayloadBucket> | null = null;

  constructor(open: () => Promise<PayloadBucket>) {
    this.#open = open;
  }

  async #kv(): Promise<PayloadBucket> {
    this.#bucket ??= this.#open();
    try {
      return await this.#bucket;
    } catch (e) {
      // Asked again next time: a bucket created later (`trias setup`) is then found.
      this.#bucket = null;
      if (!isNotFound(e)) throw e;
      throw new ValidationError(
        "payload_unavailable",
        "there is no payloads bucket for arguments carried by reference: an operator creates it with `trias setup`",
        { cause: e },
      );
    }
  }

  /**
   * The arguments as a step's frames carry them: as they are when small (nothing written),
   * else their bytes stored under their digest and a reference in their place. Arguments
   * over MAX_ARGUMENT_BYTES_CEILING are refused here, before anything is written: no policy
   * could allow them.
   */
  async store(args: JsonObject): Promise<JsonObject> {
    const w = wireArgs(args);
    if (w.inline) return w.args;
    if (w.args.bytes > MAX_ARGUMENT_BYTES_CEILING)
      throw new ValidationError(
        "payload_too_large",
        `the arguments are ${w.args.bytes} bytes, over the ${MAX_ARGUMENT_BYTES_CEILING} bytes any policy allows: send smaller arguments`,
      );
    const kv = await this.#kv();
    const keys = payloadKeys(w.args);
    const chunks = payloadChunks(w.canonical);
    // Content-addressed: a put of the same bytes under the same key changes nothing a reader sees.
    await Promise.all(keys.map((k, i) => kv.put(k, chunks[i] ?? new Uint8Array())));
    return w.args;
  }

  /**
   * The arguments a step's frames stand for: themselves (no read), or the bytes the
   * reference names, checked against its length and digest and parsed as an arguments
   * object. Missing or changed bytes are refused (`payload_unavailable`), never guessed at.
   * The caller bounds the size first (checkArgumentSize): this reads what the reference says.
   */
  async resolve(args: JsonObject): Promise<JsonObject> {
    if (!isArgsRef(args)) return args;
    const ref: ArgsRef = args;
    const kv = await this.#kv();
    const keys = payloadKeys(ref);
    const got = await Promise.all(keys.map((k) => kv.get(k)));
    const what = `the arguments ${ref.$ref.slice(0, 19)}… (${ref.bytes} bytes)`;
    const parts: Uint8Array[] = [];
    for (const [i, e] of got.entries()) {
      if (!e || e.operation !== "PUT")
        throw new ValidationError(
          "payload_unavailable",
          `${what} are not in the payloads bucket (chunk ${keys[i]} is missing): the step cannot be judged or run; submit it again`,
        );
      parts.push(e.value);
    }
    const bytes = Buffer.concat(parts);
    if (bytes.length !== ref.bytes || sha256Hex(bytes) !== refDigest(ref))
      throw new ValidationError(
        "payload_unavailable",
        `${what} do not match the bytes stored under their digest (${bytes.length} bytes found): refused; submit the step again`,
      );
    let parsed;
    try {
      parsed = JsonObject.safeParse(decode(bytes));
    } catch {
      parsed = null;
    }
    if (!parsed?.success)
      throw new ValidationError(
        "payload_unavailable",
        `${what} do not decode to an arguments object: refused`,
      );
    return parsed.data;
  }
}
