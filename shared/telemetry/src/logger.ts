import { createRequire } from "node:module";
import { hostname } from "node:os";
import { trace } from "@opentelemetry/api";
import pino from "pino";

export type Logger = pino.Logger;
export type LogDestination = pino.DestinationStream;

export const LOG_LEVELS = ["fatal", "error", "warn", "info", "debug", "trace", "silent"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** What a redacted value is replaced with. */
export const REDACTED = "[redacted]";

/**
 * Key names whose values are never logged, at any depth: private key material (JWK `d`
 * and the other private RSA/EC members, PEM or seed fields), passwords, tokens, secrets,
 * credentials and authorization headers.
 */
const SECRET_KEYS = [
  "d",
  "p",
  "q",
  "dp",
  "dq",
  "qi",
  "k",
  "privateKey",
  "private_key",
  "secretKey",
  "secret_key",
  "signingKey",
  "seed",
  "nkey",
  "password",
  "passwd",
  "pass",
  "token",
  "accessToken",
  "access_token",
  "refreshToken",
  "apiKey",
  "api_key",
  "secret",
  "clientSecret",
  "creds",
  "credentials",
  "authorization",
  "Authorization",
  "cookie",
] as const;

// JWK private members have short names that could collide with innocent top-level
// fields: they are secret inside any nested object (`*.d`, `*.jwk.d`) and, at the top
// level, when the object looks like a JWK (has `kty`).
const SECRET_KEY_SET = new Set<string>(SECRET_KEYS.map((k) => k.toLowerCase()));
const JWK_MEMBERS = new Set(["d", "p", "q", "dp", "dq", "qi", "k"]);

/** pino `redact` paths: the first line of defence (top level and two levels down). */
export const REDACT_PATHS: readonly string[] = SECRET_KEYS.flatMap((k) =>
  JWK_MEMBERS.has(k) ? [`*.${k}`, `*.*.${k}`] : [k, `*.${k}`, `*.*.${k}`],
);

// Secret-looking values inside strings (messages, error texts): PEM private keys, NATS
// nkey seeds (S + key type + base32), bearer tokens and user:password in URLs.
const SECRET_PATTERNS: readonly RegExp[] = [
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(?:-----END [A-Z ]*PRIVATE KEY-----|$)/g,
  /\bS[UAONCXP][A-Z2-7]{56}\b/g,
  /\b(Bearer|Basic)\s+[A-Za-z0-9\-._~+/]+=*/gi,
  /(\b[a-z][a-z0-9+.-]*:\/\/[^:/?#\s@]+:)[^@/\s]+@/gi,
];

/** Replaces secret-looking substrings of `s`. */
export function scrubString(s: string): string {
  let out = s;
  for (const re of SECRET_PATTERNS) {
    re.lastIndex = 0;
    if (!re.test(out)) continue;
    re.lastIndex = 0;
    out = out.replace(re, (match, g1: unknown) => {
      if (typeof g1 === "string" && match.startsWith(g1) && g1.endsWith(":"))
        return `${g1}${REDACTED}@`;
      if (typeof g1 === "string" && /^(bearer|basic)$/i.test(g1)) return `${g1} ${REDACTED}`;
      return REDACTED;
    });
  }
  return out;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== "object" || v === null) return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

const MAX_SCRUB_DEPTH = 8;

/**
 * A copy of `value` with every secret-named key censored at any depth and secret-looking
 * strings scrubbed. Plain objects and arrays are copied; anything else (Error, Date,
 * Buffer...) is passed through untouched for pino's serializers.
 */
export function scrubSecrets(
  value: unknown,
  depth = 0,
  seen: WeakSet<object> = new WeakSet(),
): unknown {
  if (typeof value === "string") return scrubString(value);
  if (depth > MAX_SCRUB_DEPTH || typeof value !== "object" || value === null) return value;
  if (seen.has(value)) return value;
  if (Array.isArray(value)) {
    seen.add(value);
    return value.map((v) => scrubSecrets(v, depth + 1, seen));
  }
  if (value instanceof Error) return scrubError(value);
  if (!isPlainObject(value)) return value;
  seen.add(value);
  const looksJwk = depth >= 1 || "kty" in value;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) {
    const lower = k.toLowerCase();
    const secret = SECRET_KEY_SET.has(lower) && (!JWK_MEMBERS.has(lower) || looksJwk);
    out[k] = secret && v !== undefined && v !== null ? REDACTED : scrubSecrets(v, depth + 1, seen);
  }
  return out;
}

function scrubError(err: Error): Error {
  const message = scrubString(err.message);
  const stack = err.stack === undefined ? undefined : scrubString(err.stack);
  if (message === err.message && stack === err.stack) return err;
  const copy = Object.create(Object.getPrototypeOf(err) as object) as Error;
  for (const k of Object.getOwnPropertyNames(err)) {
    (copy as unknown as Record<string, unknown>)[k] = (err as unknown as Record<string, unknown>)[
      k
    ];
  }
  copy.message = message;
  if (stack !== undefined) copy.stack = stack;
  return copy;
}

export interface LoggerOptions {
  /** The agent identity, e.g. `reviewer-2`. On every line as `agent`. */
  agent: string;
  /** The role, e.g. `reviewer`. On every line as `role`. */
  role: string;
  /** Default: LOG_LEVEL, else `info`. */
  level?: string;
  /** Where lines go. Default: stdout (pretty when stdout is a TTY and pino-pretty is installed). */
  destination?: LogDestination;
  /** Force or forbid pretty output on stdout. Default: LOG_FORMAT (`pretty`/`json`), else whether stdout is a TTY. */
  pretty?: boolean;
  /** More fields on every line. */
  base?: Record<string, unknown>;
}

function resolveLevel(level: string | undefined): LogLevel {
  const wanted = (level ?? process.env["LOG_LEVEL"] ?? "info").trim().toLowerCase();
  return (LOG_LEVELS as readonly string[]).includes(wanted) ? (wanted as LogLevel) : "info";
}

function wantPretty(o: LoggerOptions): boolean {
  if (o.pretty !== undefined) return o.pretty;
  const fmt = process.env["LOG_FORMAT"]?.trim().toLowerCase();
  if (fmt === "json") return false;
  if (fmt === "pretty") return true;
  return process.stdout.isTTY === true;
}

type PrettyFactory = (opts: Record<string, unknown>) => LogDestination;

function prettyStream(): LogDestination | undefined {
  try {
    const req = createRequire(import.meta.url);
    const mod = req("pino-pretty") as PrettyFactory | { default: PrettyFactory };
    const factory = typeof mod === "function" ? mod : mod.default;
    return factory({
      colorize: true,
      translateTime: "SYS:HH:MM:ss.l",
      ignore: "pid,hostname,agent,role,run,step",
      messageFormat: "{if agent}{agent} {end}{if run}[{run}{if step}#{step}{end}] {end}{msg}",
      destination: 1,
    });
  } catch {
    return undefined;
  }
}

/**
 * A pino logger writing one JSON object per line. Every line carries `agent`, `role` and,
 * when a span is active, `trace_id` and `span_id`. Secrets are censored by key name at any
 * depth (plus pino's path redaction) and by pattern inside strings.
 */
export function createLogger(o: LoggerOptions): Logger {
  const options: pino.LoggerOptions = {
    level: resolveLevel(o.level),
    base: {
      ...(o.base === undefined ? {} : (scrubSecrets(o.base) as Record<string, unknown>)),
      agent: o.agent,
      role: o.role,
      pid: process.pid,
      hostname: hostname(),
    },
    timestamp: pino.stdTimeFunctions.isoTime,
    messageKey: "msg",
    redact: { paths: [...REDACT_PATHS], censor: REDACTED },
    formatters: {
      level: (label) => ({ level: label }),
      bindings: (bindings) => scrubSecrets(bindings) as Record<string, unknown>,
      log: (obj) => scrubSecrets(obj) as Record<string, unknown>,
    },
    hooks: {
      logMethod(args, method) {
        // Scrub the message string and its printf-style arguments.
        const cleaned = args.map((a) => (typeof a === "string" ? scrubString(a) : a)) as Parameters<
          typeof method
        >;
        method.apply(this, cleaned);
      },
    },
    mixin() {
      const span = trace.getActiveSpan();
      if (span === undefined) return {};
      const sc = span.spanContext();
      if (!trace.isSpanContextValid(sc)) return {};
      return { trace_id: sc.traceId, span_id: sc.spanId };
    },
  };
  let destination = o.destination;
  if (destination === undefined && wantPretty(o)) destination = prettyStream();
  return destination === undefined ? pino(options) : pino(options, destination);
}

/** A child logger whose lines carry `run`. */
export function forRun(log: Logger, run: string): Logger {
  return log.child({ run });
}

/** A child logger whose lines carry `run`, `step` and, if given, `attempt`. */
export function forStep(log: Logger, run: string, step: number | string, attempt?: number): Logger {
  return log.child(attempt === undefined ? { run, step } : { run, step, attempt });
}
