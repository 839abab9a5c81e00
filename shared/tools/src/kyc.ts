import { readFileSync } from "node:fs";
import type { KV } from "@nats-io/kv";
import { z } from "zod";
import { SUBJECT_KEYS_BUCKET } from "@trias/bus";
import { isSealed, SUBJECT_ID, type Check } from "@trias/protocol";
import { defineTool, defineToolPack, ToolRefusal, type ToolContext } from "./pack.js";
import { SubjectKeys } from "./privacy.js";

/** Where the KYC pack keeps documents (sealed), accounts and the notification outbox. */
export const KYC_BUCKET = "trias_kyc";

const Lists = z.object({
  highRiskCountries: z.array(z.string().length(2)),
  entries: z.array(
    z.object({ id: z.string(), list: z.enum(["sanctions", "pep"]), name: z.string().min(1) }),
  ),
});
export type KycLists = z.infer<typeof Lists>;

/** The fictional sanctions/PEP lists shipped as data with the pack. */
export const KYC_LISTS: KycLists = Lists.parse(
  JSON.parse(readFileSync(new URL("../data/kyc-lists.json", import.meta.url), "utf8")),
);

/** Case, accents, punctuation and word order do not hide a listed name. */
function nameKey(name: string): string {
  return name
    .normalize("NFKD")
    .replace(/\p{M}/gu, "")
    .toLowerCase()
    .replace(/[^a-z0-9 ]/g, " ")
    .split(/\s+/)
    .filter(Boolean)
    .sort()
    .join(" ");
}

/** The screening rule: the list entry a name matches, sanctions before PEP, or null. */
export function screenName(
  name: string,
  lists: KycLists = KYC_LISTS,
): KycLists["entries"][number] | null {
  const k = nameKey(name);
  const hits = lists.entries.filter((e) => nameKey(e.name) === k);
  return hits.find((e) => e.list === "sanctions") ?? hits[0] ?? null;
}

export type Risk = "low" | "medium" | "high";

/**
 * Monthly volume above which a customer is at least medium, and high, risk.
 * @default 10000 and 50000 (demo thresholds, in the ledger's units)
 */
export const MEDIUM_RISK_VOLUME = 10_000;
export const HIGH_RISK_VOLUME = 50_000;

/** The risk rule: one function for the planner (which routes on it) and the tool (which rechecks it). */
export function kycRisk(
  f: { country: string; pep: boolean; monthlyVolume: number },
  lists: KycLists = KYC_LISTS,
): Risk {
  if (f.pep || lists.highRiskCountries.includes(f.country) || f.monthlyVolume > HIGH_RISK_VOLUME)
    return "high";
  return f.monthlyVolume > MEDIUM_RISK_VOLUME ? "medium" : "low";
}

const RISK_ORDER: Record<Risk, number> = { low: 0, medium: 1, high: 2 };

/**
 * Adult age for opening an account.
 * @default 18
 */
const ADULT_YEARS = 18;

export interface KycResources {
  store: KV;
  /** The key store, for the executor only: the verifier checks records, never clear data. */
  keys: SubjectKeys | null;
}
type Ctx = ToolContext<KycResources>;

const Subject = z.string().regex(SUBJECT_ID, "a subject id (customer number)");
const Sealed = z
  .string()
  .refine(isSealed, "a sealed personal value (pii:v1:...): the console seals personal data");
const Country = z.string().regex(/^[A-Z]{2}$/, "an ISO 3166 alpha-2 country code");
const RiskArg = z.enum(["low", "medium", "high"]);

const keyOf = (...parts: string[]) => parts.map((p) => p.replace(/[^A-Za-z0-9_-]/g, "_")).join(".");

async function clear(ctx: Ctx, token: string): Promise<string> {
  if (!ctx.resources.keys)
    throw new ToolRefusal("this process has no access to the key store (executor only)");
  return ctx.resources.keys.open(token);
}

async function readJson(kv: KV, key: string): Promise<Record<string, unknown> | null> {
  const e = await kv.get(key);
  return e && e.operation === "PUT" ? e.json<Record<string, unknown>>() : null;
}

const present = (name: string, ok: boolean, what: string): Check => ({
  name,
  ok,
  detail: ok ? `${what} recorded` : `${what} missing`,
});

const collect = defineTool({
  name: "kyc.collect_documents",
  description: "Store a customer's identity document and date of birth (sealed) for the KYC file.",
  input: z.object({ subject: Subject, document: Sealed, dob: Sealed }).strict(),
  op: "write",
  domains: ["kyc"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, document, dob }, ctx: Ctx) {
    await ctx.resources.store.put(keyOf("doc", subject), JSON.stringify({ document, dob }));
    return { subject, collected: ["document", "dob"] };
  },
  compensate: ({ subject }) => ({ tool: "kyc.discard_documents", args: { subject } }),
  async verify({ subject }, _r, ctx: Ctx) {
    return [
      present(
        "documents stored",
        !!(await readJson(ctx.resources.store, keyOf("doc", subject))),
        "KYC file",
      ),
    ];
  },
});

const discard = defineTool({
  name: "kyc.discard_documents",
  description:
    "Remove a customer's KYC file (the undo of kyc.collect_documents, e.g. after a refusal).",
  input: z.object({ subject: Subject }).strict(),
  op: "write",
  domains: ["kyc"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject }, ctx: Ctx) {
    await ctx.resources.store.purge(keyOf("doc", subject));
    return { subject, discarded: true };
  },
  async verify({ subject }, _r, ctx: Ctx) {
    const gone = !(await readJson(ctx.resources.store, keyOf("doc", subject)));
    return [{ name: "KYC file removed", ok: gone, detail: gone ? "no file" : "file still there" }];
  },
});

const checkIdentity = defineTool({
  name: "kyc.check_identity",
  description:
    "Check the customer's identity: a well-formed document number and an adult date of birth.",
  input: z.object({ subject: Subject, name: Sealed, document: Sealed, dob: Sealed }).strict(),
  op: "read",
  domains: ["kyc"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, name, document, dob }, ctx: Ctx) {
    const [n, d, b] = await Promise.all([clear(ctx, name), clear(ctx, document), clear(ctx, dob)]);
    // Refusals name the failed check, never the value: they are stored in the trace in clear.
    if (n.trim().split(/\s+/).length < 2)
      throw new ToolRefusal(`identity of ${subject}: a full name is required`);
    if (!/^[A-Z0-9]{6,12}$/.test(d))
      throw new ToolRefusal(`identity of ${subject}: the document number is malformed`);
    const born = new Date(`${b}T00:00:00Z`);
    if (Number.isNaN(born.getTime()))
      throw new ToolRefusal(`identity of ${subject}: the date of birth is not a date`);
    const adult = new Date(born);
    adult.setUTCFullYear(born.getUTCFullYear() + ADULT_YEARS);
    if (adult.getTime() > Date.now())
      throw new ToolRefusal(`identity of ${subject}: the customer is under ${ADULT_YEARS}`);
    return { subject, verified: true };
  },
});

const screen = defineTool({
  name: "kyc.screen",
  description:
    "Screen the customer's name against the sanctions and PEP lists; a sanctions match refuses.",
  input: z.object({ subject: Subject, name: Sealed }).strict(),
  op: "read",
  domains: ["kyc"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, name }, ctx: Ctx) {
    const hit = screenName(await clear(ctx, name));
    if (hit?.list === "sanctions")
      throw new ToolRefusal(
        `subject ${subject} matches sanctions list entry ${hit.id}: onboarding refused`,
      );
    return { subject, sanctions: false, pep: hit ? hit.id : null };
  },
});

const rateRisk = defineTool({
  name: "kyc.rate_risk",
  description:
    "Recompute the customer's risk (PEP match, country, volume); refuse if it is above the risk the plan was routed on.",
  input: z
    .object({
      subject: Subject,
      name: Sealed,
      country: Country,
      monthlyVolume: z.number().nonnegative(),
      pep: z.boolean(),
      risk: RiskArg,
    })
    .strict(),
  op: "read",
  domains: ["kyc"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, name, country, monthlyVolume, pep, risk }, ctx: Ctx) {
    const listed = screenName(await clear(ctx, name))?.list === "pep";
    const actual = kycRisk({ country, monthlyVolume, pep: pep || listed });
    if (RISK_ORDER[actual] > RISK_ORDER[risk])
      throw new ToolRefusal(
        `subject ${subject} is ${actual} risk${listed ? " (a PEP list match)" : ""}, not the ${risk} the plan was routed on: resubmit with the facts declared`,
      );
    return { subject, risk: actual };
  },
});

const openAccount = defineTool({
  name: "kyc.open_account",
  description: "Open the customer's account at the rated risk.",
  input: z.object({ subject: Subject, risk: RiskArg }).strict(),
  op: "write",
  domains: ["kyc", "ledger"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, risk }, ctx: Ctx) {
    const prior = await readJson(ctx.resources.store, keyOf("account", subject));
    if (prior && prior["open"] === true && prior["effectId"] !== ctx.effectId)
      throw new ToolRefusal(`subject ${subject} already has an open account`);
    await ctx.resources.store.put(
      keyOf("account", subject),
      JSON.stringify({ open: true, risk, effectId: ctx.effectId }),
    );
    return { subject, account: `acct-${subject}`, risk };
  },
  compensate: ({ subject }) => ({ tool: "kyc.close_account", args: { subject } }),
  async verify({ subject, risk }, _r, ctx: Ctx) {
    const a = await readJson(ctx.resources.store, keyOf("account", subject));
    return [
      present("account open", a?.["open"] === true, "open account"),
      { name: "risk recorded", ok: a?.["risk"] === risk, detail: `risk ${String(a?.["risk"])}` },
    ];
  },
});

const closeAccount = defineTool({
  name: "kyc.close_account",
  description: "Close an account opened by onboarding (the undo of kyc.open_account).",
  input: z.object({ subject: Subject }).strict(),
  op: "write",
  domains: ["kyc", "ledger"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject }, ctx: Ctx) {
    const a = (await readJson(ctx.resources.store, keyOf("account", subject))) ?? {};
    await ctx.resources.store.put(keyOf("account", subject), JSON.stringify({ ...a, open: false }));
    return { subject, closed: true };
  },
});

const notify = defineTool({
  name: "kyc.notify",
  description: "Send the customer a notice (welcome) by e-mail through the outbox.",
  input: z.object({ subject: Subject, email: Sealed, template: z.enum(["welcome"]) }).strict(),
  op: "write",
  domains: ["kyc", "external"],
  objects: { count: 1 },
  idempotent: true,
  async run({ subject, email, template }, ctx: Ctx) {
    if (!/^[^@\s]+@[^@\s]+$/.test(await clear(ctx, email)))
      throw new ToolRefusal(`notice to ${subject}: the e-mail address is malformed`);
    // The outbox keeps the sealed address: the mail relay opens it, and erasure reaches it too.
    await ctx.resources.store.put(
      keyOf("notice", subject, ctx.effectId),
      JSON.stringify({ to: email, template }),
    );
    return { subject, queued: template };
  },
  async verify({ subject }, _r, ctx: Ctx) {
    return [
      present(
        "notice queued",
        !!(await readJson(ctx.resources.store, keyOf("notice", subject, ctx.effectId))),
        "notice",
      ),
    ];
  },
});

/** KYC onboarding (docs/privacy.md): personal arguments are sealed tokens, opened only by the executor. */
export const kycPack = defineToolPack<KycResources>({
  name: "kyc",
  tools: [collect, discard, checkIdentity, screen, rateRisk, openAccount, closeAccount, notify],
  async open(host) {
    return {
      store: await host.kv(KYC_BUCKET),
      keys: host.role === "executor" ? new SubjectKeys(await host.kv(SUBJECT_KEYS_BUCKET)) : null,
    };
  },
});
