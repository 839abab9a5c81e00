/**
 * NATS server configuration with one user per identity (each reviewer, each human, the
 * console, every agent) and least privilege on the JetStream API. docs/security.md ("NATS
 * credentials and permissions") holds the table this file produces and why each line is there.
 *
 * - Publish: only the identity's own role subjects (`trias.<role>.>`) and the KV buckets its
 *   role writes; no identity but admin may create, change, purge or delete a stream.
 * - Durable consumers: only the identity's own named durables (create, info, pull, delete,
 *   ack), on the subjects nats.js v3 uses from nats-server 2.9.0 on (the filtered
 *   `CONSUMER.CREATE.<stream>.<durable>.<filter>`), plus the older
 *   `CONSUMER.DURABLE.CREATE.<stream>.<durable>` a client may use.
 * - Reads (readAll, watch): ephemeral consumers through `CONSUMER.CREATE.<stream>`, which the
 *   server refuses to turn into a durable; their names are server-chosen, so pulling, info and
 *   delete are allowed on any consumer of the trace except, by an explicit deny, every other
 *   identity's durables.
 * - Subscribe: only the identity's own inbox prefix (`_INBOX_<name>.>`).
 */
import { STREAM_NAME, type Role } from "@trias/protocol";

export type NatsUserRole = Role | "admin";

/** KV buckets the executor (the only holder of tool credentials) may write. */
export const EXECUTOR_BUCKETS = ["trias_ledger", "trias_effects", "trias_kyc"] as const;

/**
 * The key store of crypto-shredding (docs/privacy.md): one AES key per data subject. Only
 * the console (which seals personal data at submission and creates keys), the admin (which
 * erases them) and the executor (whose tools need clear values) may read it; every other
 * role is denied the JetStream reads of its stream below.
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

/** Key-store reads a role is denied although the generic stream reads match them (deny wins in NATS). */
export function keyStoreDeny(role: NatsUserRole): string[] {
  return role === "admin" || role === "executor" || role === "console" ? [] : SUBJECT_KEYS_READS;
}

/**
 * Where the verifier anchors each closed run's receipt in a signed hash chain (docs/receipts.md,
 * "The checkpoint"): only the verifier writes it, anyone with stream read access reads it.
 */
export const RECEIPTS_BUCKET = "trias_receipts";

/**
 * The pending index (docs/scaling.md, "Cold paths"): one key per run that has a step asking a
 * human, put by the verifier when it sees the assignment and deleted when the run closes, so
 * `trias pending` reads those runs instead of the whole trace. A hint: readers still check
 * each run's trace, and only the verifier writes it.
 */
export const PENDING_BUCKET = "trias_pending";

/** Where reviewers claim a step that needs fewer reviewers than there are (first come, first judge). */
export const REVIEW_CLAIMS_BUCKET = "trias_reviews";

/**
 * Step arguments too large to travel in their frames (docs/security.md, "Bounded messages end
 * to end"): content-addressed chunks, keyed by the SHA-256 of the arguments' canonical
 * encoding, so a reader checks what it gets against the reference it holds. Written only by
 * the identities that build a step's arguments (PAYLOAD_WRITERS); every role reads it.
 */
export const PAYLOADS_BUCKET = "trias_payloads";

/**
 * Who may put into the payloads bucket: the console (a submitted task's arguments), the
 * proposer (a step it plans) and the verifier (the arguments of a compensation it orders).
 * A reviewer, the router, the executor and a human only read it.
 */
export const PAYLOAD_WRITERS: readonly Role[] = ["console", "proposer", "verifier"];

/**
 * The partition leases of replicas (docs/scaling.md, section 2): one key per agent identity,
 * its lease table, which only that identity may write (`$KV.trias_leases.<identity>`).
 */
export const LEASES_BUCKET = "trias_leases";

/**
 * Rate-limit windows every router replica shares (docs/rate-limits.md): one key per limited
 * tool, the calls accepted in its window; only routers write it.
 */
export const RATES_BUCKET = "trias_rates";

/**
 * Replicas of one agent identity at most. Each replica after the first has its own durables
 * (`<durable>-r<n>`), which the permissions below name one by one, so the number is bounded.
 * @default 4
 */
export const MAX_REPLICAS = 4;

/** A replica's durable name: the first replica keeps the identity's name, others add `-r<n>`. */
export function replicaDurable(durable: string, replica: string): string {
  return replica === "1" ? durable : `${durable}-r${replica}`;
}

/** The user an operator sets up the trace with; never given to an agent or the CLI's daily use. */
export const ADMIN_USER = "admin";

export interface NatsUser {
  /** The identity's name ("reviewer-2"), or `admin`. */
  user: string;
  password: string;
  role: NatsUserRole;
}

/**
 * The durable consumers an identity creates and consumes: the only ones its NATS user may
 * touch. The agents name the same durables (a stack waits for exactly these, so a name that
 * drifts fails every stack test).
 */
export function durablesOf(u: { user: string; role: NatsUserRole }): string[] {
  return firstReplicaDurables(u).flatMap((d) =>
    Array.from({ length: MAX_REPLICAS }, (_, i) => replicaDurable(d, String(i + 1))),
  );
}

/** The durables of an identity's first replica (the only ones of a deployment without replicas). */
export function firstReplicaDurables(u: { user: string; role: NatsUserRole }): string[] {
  switch (u.role) {
    case "proposer":
      return ["proposer-tasks", "proposer-progress", "proposer-recovery"];
    case "router":
      return ["router"];
    case "reviewer":
      return [`reviewer-${u.user}`];
    case "executor":
      return ["executor-assignments", "executor-verdicts", "executor-recovery"];
    case "verifier":
      return ["verifier"];
    case "console":
    case "human":
    case "admin":
      return [];
  }
}

/** The inbox prefix a connection uses, so that its user may subscribe to its own replies only. */
export function inboxPrefixOf(user: string): string {
  return `_INBOX_${user}`;
}

/** The environment variable the shipped configuration reads an identity's password from. */
export function passwordEnvVar(user: string): string {
  return `${user.toUpperCase().replace(/[^A-Z0-9]/g, "_")}_PASSWORD`;
}

export interface NatsPermissions {
  publish: { allow: string[]; deny?: string[] };
  subscribe?: { allow: string[] };
}

const API = "$JS.API";

/** Read-only stream access: info, message get (KV reads go through direct get). */
function streamReads(): string[] {
  return [`${API}.INFO`, `${API}.STREAM.INFO.*`, `${API}.STREAM.MSG.GET.*`, `${API}.DIRECT.GET.>`];
}

function ownDurable(stream: string, d: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}.${d}`,
    `${API}.CONSUMER.CREATE.${stream}.${d}.>`,
    `${API}.CONSUMER.DURABLE.CREATE.${stream}.${d}`,
    `${API}.CONSUMER.INFO.${stream}.${d}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${d}`,
    `${API}.CONSUMER.DELETE.${stream}.${d}`,
    `$JS.ACK.${stream}.${d}.>`,
  ];
}

/** Ephemeral read consumers: created only through the subject that refuses a durable name. */
function ephemeralReads(stream: string): string[] {
  return [
    `${API}.CONSUMER.CREATE.${stream}`,
    `${API}.CONSUMER.INFO.${stream}.*`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.*`,
    `${API}.CONSUMER.DELETE.${stream}.*`,
  ];
}

/**
 * Reading the KV buckets' history (`kv.keys()`, a watch: ordered push consumers, named by the
 * client, delivering to the reader's inbox, with flow control). No one consumes these streams
 * through a durable, so there is nothing to protect by name; a durable made here would take
 * space, never another's messages.
 */
function bucketReads(): string[] {
  return [
    ...EXECUTOR_BUCKETS,
    REVIEW_CLAIMS_BUCKET,
    RECEIPTS_BUCKET,
    PENDING_BUCKET,
    LEASES_BUCKET,
    RATES_BUCKET,
  ].flatMap((b) => [
    `${API}.CONSUMER.CREATE.KV_${b}`,
    `${API}.CONSUMER.CREATE.KV_${b}.>`,
    `${API}.CONSUMER.INFO.KV_${b}.*`,
    `${API}.CONSUMER.MSG.NEXT.KV_${b}.*`,
    `${API}.CONSUMER.DELETE.KV_${b}.*`,
    `$JS.FC.KV_${b}.>`,
  ]);
}

function othersDurable(stream: string, d: string): string[] {
  return [
    `${API}.CONSUMER.INFO.${stream}.${d}`,
    `${API}.CONSUMER.MSG.NEXT.${stream}.${d}`,
    `${API}.CONSUMER.DELETE.${stream}.${d}`,
  ];
}

function ownSubjects(u: NatsUser): string[] {
  const role = u.role as Role;
  // Agents keep their replicas' partition leases; people and the console have none.
  const leases = durablesOf(u).length > 0 ? [`$KV.${LEASES_BUCKET}.${u.user}`] : [];
  // Those who build a step's arguments store the large ones (PAYLOAD_WRITERS).
  const payloads = PAYLOAD_WRITERS.includes(role) ? [`$KV.${PAYLOADS_BUCKET}.>`] : [];
  return [...roleSubjects(role), ...leases, ...payloads];
}

function roleSubjects(role: Role): string[] {
  switch (role) {
    case "executor":
      return [`trias.${role}.>`, ...EXECUTOR_BUCKETS.map((b) => `$KV.${b}.>`)];
    case "reviewer":
      return [`trias.${role}.>`, `$KV.${REVIEW_CLAIMS_BUCKET}.>`];
    case "verifier":
      return [
        `trias.${role}.>`,
        `$KV.${RECEIPTS_BUCKET}.>`,
        `$KV.${PENDING_BUCKET}.>`,
        // A closed run's key is removed, not deleted: a delete marker per run would grow the bucket.
        `${API}.STREAM.MSG.DELETE.KV_${PENDING_BUCKET}`,
      ];
    case "console":
      return [`trias.${role}.>`, `$KV.${SUBJECT_KEYS_BUCKET}.>`];
    case "router":
      return [`trias.${role}.>`, `$KV.${RATES_BUCKET}.>`];
    default:
      return [`trias.${role}.>`];
  }
}

/**
 * What one user may do, given every user of the deployment (another identity's durables are
 * denied by name, so the list must be the whole deployment's).
 */
export function permissionsOf(
  u: NatsUser,
  all: readonly NatsUser[],
  stream = STREAM_NAME,
): NatsPermissions {
  if (u.role === "admin") return { publish: { allow: [">"] } };
  const mine = new Set(durablesOf(u));
  const others = [...new Set(all.flatMap(durablesOf))].filter((d) => !mine.has(d));
  const deny = [...others.flatMap((d) => othersDurable(stream, d)), ...keyStoreDeny(u.role)];
  return {
    publish: {
      allow: [
        ...streamReads(),
        ...ephemeralReads(stream),
        ...bucketReads(),
        ...[...mine].flatMap((d) => ownDurable(stream, d)),
        ...ownSubjects(u),
      ],
      ...(deny.length > 0 ? { deny } : {}),
    },
    subscribe: { allow: [`${inboxPrefixOf(u.user)}.>`] },
  };
}

function quote(s: string): string {
  return JSON.stringify(s);
}

/** A list, one subject a line (the shipped file is read by operators). */
function list(xs: readonly string[], indent: string): string {
  return `[\n${xs.map((x) => `${indent}  ${quote(x)},`).join("\n")}\n${indent}]`;
}

export interface NatsConfigOptions {
  /** Write each password as a `$<NAME>_PASSWORD` environment reference instead of a literal. */
  passwordsFromEnv?: boolean;
  /** @default "127.0.0.1" */
  host?: string;
  port: number;
  storeDir: string;
  users?: readonly NatsUser[];
  /** @default 1048576 (1 MiB, the stream's largest message) */
  maxPayload?: number;
  /** @default "trias" */
  serverName?: string;
}

/**
 * The server configuration: the one `trias nats-config` writes to deploy/nats/nats.conf and
 * the one the embedded server of `pnpm start` and the tests run (only listen, store and the
 * identities differ).
 */
export function natsConfig(o: NatsConfigOptions): string {
  const lines = [
    `server_name: ${quote(o.serverName ?? "trias")}`,
    `listen: ${quote(`${o.host ?? "127.0.0.1"}:${o.port}`)}`,
    `max_payload: ${o.maxPayload ?? 1048576}`,
    `jetstream {`,
    `  store_dir: ${quote(o.storeDir)}`,
    `}`,
  ];
  const users = o.users ?? [];
  if (users.length > 0) {
    lines.push("authorization {", "  users: [");
    for (const u of users) {
      const p = permissionsOf(u, users);
      const password = o.passwordsFromEnv ? `$${passwordEnvVar(u.user)}` : quote(u.password);
      lines.push(
        "    {",
        `      user: ${quote(u.user)}, password: ${password}`,
        "      permissions: {",
        "        publish: {",
        `          allow: ${list(p.publish.allow, "          ")}`,
      );
      if (p.publish.deny) lines.push(`          deny: ${list(p.publish.deny, "          ")}`);
      lines.push("        }");
      if (p.subscribe)
        lines.push(`        subscribe: { allow: [${p.subscribe.allow.map(quote).join(", ")}] }`);
      lines.push("      }", "    }");
    }
    lines.push("  ]", "}");
  }
  return lines.join("\n") + "\n";
}
