/**
 * NATS server configuration with one user per agent role. The server itself refuses a
 * publish outside the role's own subjects (`trias.<role>.>`), and no agent may create,
 * change, purge or delete the trace stream: only the admin (console / operator) can.
 */

export type NatsUserRole = "admin" | "proposer" | "router" | "reviewer" | "executor" | "verifier";

export const AGENT_NATS_ROLES: readonly NatsUserRole[] = [
  "proposer",
  "router",
  "reviewer",
  "executor",
  "verifier",
];

/** KV buckets the executor (the only holder of tool credentials) may write. */
export const EXECUTOR_BUCKETS = ["trias_ledger", "trias_effects", "trias_kyc"] as const;

/**
 * The key store of crypto-shredding (docs/privacy.md): one AES key per data subject. Only
 * the admin (the console, which seals personal data at submission and erases keys) and the
 * executor (whose tools need clear values) may read it; every other role is denied the
 * JetStream reads of its stream below, and only the admin may write it.
 */
export const SUBJECT_KEYS_BUCKET = "trias_subject_keys";

/** Every JetStream API subject that reads the key store's stream: denied to roles without clear data. */
export const SUBJECT_KEYS_READS = [
  `$JS.API.STREAM.MSG.GET.KV_${SUBJECT_KEYS_BUCKET}`,
  `$JS.API.DIRECT.GET.KV_${SUBJECT_KEYS_BUCKET}`,
  `$JS.API.DIRECT.GET.KV_${SUBJECT_KEYS_BUCKET}.>`,
  `$JS.API.CONSUMER.*.KV_${SUBJECT_KEYS_BUCKET}`,
  `$JS.API.CONSUMER.*.KV_${SUBJECT_KEYS_BUCKET}.>`,
  `$JS.API.CONSUMER.*.*.KV_${SUBJECT_KEYS_BUCKET}.>`,
  `$JS.API.CONSUMER.*.*.KV_${SUBJECT_KEYS_BUCKET}`,
];

/** What a role may not publish although `publishAllow` matches it (deny wins in NATS). */
export function publishDeny(role: NatsUserRole): string[] {
  return role === "admin" || role === "executor" ? [] : SUBJECT_KEYS_READS;
}

/**
 * Where the verifier anchors each closed run's receipt in a signed hash chain (docs/receipts.md,
 * "The checkpoint"): only the verifier writes it, anyone with stream read access reads it.
 */
export const RECEIPTS_BUCKET = "trias_receipts";

/** Where reviewers claim a step that needs fewer reviewers than there are (first come, first judge). */
export const REVIEW_CLAIMS_BUCKET = "trias_reviews";

export interface NatsUser {
  user: string;
  password: string;
  role: NatsUserRole;
}

const jsRead = [
  "$JS.API.INFO",
  "$JS.API.STREAM.INFO.>",
  "$JS.API.STREAM.NAMES",
  "$JS.API.STREAM.LIST",
  "$JS.API.STREAM.MSG.GET.>",
  "$JS.API.DIRECT.GET.>",
  "$JS.API.CONSUMER.>",
  "$JS.ACK.>",
  "$JS.FC.>",
];

export function publishAllow(role: NatsUserRole): string[] {
  switch (role) {
    case "admin":
      return [">"];
    case "executor":
      return [...jsRead, "trias.executor.>", ...EXECUTOR_BUCKETS.map((b) => `$KV.${b}.>`)];
    case "reviewer":
      return [...jsRead, "trias.reviewer.>", `$KV.${REVIEW_CLAIMS_BUCKET}.>`];
    case "verifier":
      return [...jsRead, "trias.verifier.>", `$KV.${RECEIPTS_BUCKET}.>`];
    case "proposer":
    case "router":
      return [...jsRead, `trias.${role}.>`];
  }
}

function quote(s: string): string {
  return JSON.stringify(s);
}

export interface NatsConfigOptions {
  /** Write each password as a `$<ROLE>_PASSWORD` environment reference instead of a literal. */
  passwordsFromEnv?: boolean;
  host?: string;
  port: number;
  storeDir: string;
  users?: readonly NatsUser[];
  maxPayload?: number;
  serverName?: string;
}

export function natsConfig(o: NatsConfigOptions): string {
  const lines = [
    `server_name: ${quote(o.serverName ?? "trias")}`,
    `listen: ${quote(`${o.host ?? "127.0.0.1"}:${o.port}`)}`,
    `max_payload: ${o.maxPayload ?? 1048576}`,
    `jetstream {`,
    `  store_dir: ${quote(o.storeDir)}`,
    `}`,
  ];
  if (o.users && o.users.length > 0) {
    lines.push("authorization {", "  users: [");
    for (const u of o.users) {
      const allow = publishAllow(u.role).map(quote).join(", ");
      const deny = publishDeny(u.role).map(quote).join(", ");
      lines.push(
        `    { user: ${quote(u.user)}, password: ${o.passwordsFromEnv ? `$${u.role.toUpperCase()}_PASSWORD` : quote(u.password)}, permissions: { publish: { allow: [${allow}]${deny ? `, deny: [${deny}]` : ""} } } }`,
      );
    }
    lines.push("  ]", "}");
  }
  return lines.join("\n") + "\n";
}
