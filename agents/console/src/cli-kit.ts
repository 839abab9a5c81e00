import { existsSync } from "node:fs";
import { CommanderError, InvalidArgumentError } from "commander";
import type { Bus } from "@trias/bus";
import { isTriasError, type ErrorCode } from "@trias/protocol";
import { PolicyError } from "@trias/policy";
import { connectOperator } from "./connect.js";

/**
 * The CLI's exit codes, documented in docs/cli.md: scripts can tell "the answer is no" (1)
 * from "you called it wrong" (2), "it does not exist" (3) and "the environment is not there"
 * (4). A signal ends a long command with 128 + the signal's number (130, 143).
 */
export const EXIT = {
  /** The command did what was asked and the answer is yes. */
  ok: 0,
  /** The command ran and the answer is no: an audit failed, a run did not complete, a policy refused. */
  failed: 1,
  /** Usage: an unknown command or option, a missing or malformed argument. */
  usage: 2,
  /** What was named does not exist: a run, a step, a file, an identity. */
  notFound: 3,
  /** The environment is missing: NATS_URL unset or unreachable, no nats-server binary, no key registry, no build. */
  unavailable: 4,
  /** The input exists but cannot be read as what it must be: not msgpack, truncated, not a trias export (docs/receipts.md). */
  unreadable: 5,
  /** A bug: an error nobody anticipated (TRIAS_DEBUG=1 prints its stack). */
  internal: 70,
} as const;
export type ExitCode = (typeof EXIT)[keyof typeof EXIT];

/** An error the CLI reports as one line and an exit code, never with a stack trace. */
export class CliError extends Error {
  override readonly name = "CliError";
  readonly exitCode: number;
  constructor(exitCode: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.exitCode = exitCode;
  }
}

export const notFound = (message: string) => new CliError(EXIT.notFound, message);
export const usage = (message: string) => new CliError(EXIT.usage, message);

/** Which exit code a Trias error's code maps to (the rest are "failed"). */
const TRIAS_EXIT: Partial<Record<ErrorCode, number>> = {
  config_invalid: EXIT.unavailable,
  bus_unavailable: EXIT.unavailable,
  timeout: EXIT.unavailable,
  key_unknown: EXIT.notFound,
  input_unreadable: EXIT.unreadable,
  internal: EXIT.internal,
};

/** Node system error codes that mean "it does not exist" or "you may not touch it". */
const SYSTEM_EXIT: Record<string, number> = {
  ENOENT: EXIT.notFound,
  ENOTDIR: EXIT.notFound,
  EACCES: EXIT.unavailable,
  EPERM: EXIT.unavailable,
  ECONNREFUSED: EXIT.unavailable,
};

/** One line for the user and the exit code, for anything a command throws. */
export function classify(e: unknown): { exitCode: number; message: string | null } {
  if (e instanceof CommanderError) {
    // Commander has printed its own message (help, version, or the usage error) already.
    const quiet = ["commander.helpDisplayed", "commander.help", "commander.version"];
    return { exitCode: quiet.includes(e.code) ? EXIT.ok : EXIT.usage, message: null };
  }
  if (e instanceof CliError) return { exitCode: e.exitCode, message: e.message };
  if (e instanceof PolicyError)
    return { exitCode: EXIT.failed, message: `policy refused:\n${e.message}` };
  if (isTriasError(e))
    return { exitCode: TRIAS_EXIT[e.code] ?? EXIT.failed, message: `${e.code}: ${e.message}` };
  const code = (e as NodeJS.ErrnoException | undefined)?.code;
  if (typeof code === "string" && code in SYSTEM_EXIT) {
    const err = e as NodeJS.ErrnoException;
    return {
      exitCode: SYSTEM_EXIT[code] ?? EXIT.failed,
      message: `${err.path ? `${err.path}: ` : ""}${err.message}`,
    };
  }
  const message = e instanceof Error ? e.message : String(e);
  return {
    exitCode: EXIT.internal,
    message: `internal error: ${message}${process.env["TRIAS_DEBUG"] ? `\n${(e as Error)?.stack ?? ""}` : " (this is a bug; TRIAS_DEBUG=1 prints the stack)"}`,
  };
}

/** A line on stdout. */
export function out(line: string): void {
  process.stdout.write(line + "\n");
}

/** A line on stderr: what the user may want to know, not the command's answer. */
export function note(line: string): void {
  process.stderr.write(`trias: ${line}\n`);
}

/** What a command says when a run had to be read from the stream's beginning (see readRun). */
export function fullReadNote(run: string): (why: string) => void {
  return (why) => note(`${why}; read run ${run} from the start of the trace`);
}

/**
 * Run `fn` with an operator connection, draining it after (also on error). It connects as
 * `as`, the identity the command acts as (docs/security.md: the console by default).
 */
export async function withOperator<T>(
  fn: (c: Awaited<ReturnType<typeof connectOperator>>) => Promise<T>,
  as?: string,
): Promise<T> {
  const c = await connectOperator(as);
  try {
    return await fn(c);
  } finally {
    await c.bus.drain();
  }
}

/** Commander argument parsers: a bad value is a usage error naming the argument. */
export function nonNegativeInt(name: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0)
      throw new InvalidArgumentError(`${name} must be a whole number >= 0 (got "${v}")`);
    return n;
  };
}

export function jsonArg(name: string, example: string) {
  return (v: string): unknown => {
    try {
      return JSON.parse(v);
    } catch (e) {
      throw new InvalidArgumentError(
        `${name} is not JSON: ${(e as Error).message}; example: ${example}`,
      );
    }
  };
}

export function existingFile(v: string): string {
  if (!existsSync(v)) throw new InvalidArgumentError(`no such file: ${v}`);
  return v;
}

/** The run must have messages in the trace; "no such run" otherwise. */
export function requireRun<T>(bus: Bus, run: string, events: readonly T[]): void {
  if (events.length === 0)
    throw notFound(`no such run: ${run} (no message of it in the trace stream ${bus.stream})`);
}
