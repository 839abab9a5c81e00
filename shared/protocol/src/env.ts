// Reading a process's environment through a zod schema: each process declares its variables
// once, with their defaults, and a wrong value stops it at start with a message naming the
// variable, what it held and what it must be. Pure: the caller passes the environment.
import { z } from "zod";
import { ValidationError } from "./errors.js";

/** A process environment, as `process.env` is typed. */
export type Env = Record<string, string | undefined>;

/** An empty value counts as unset, as shells and compose files write `VAR=` to mean "none". */
const unsetIfEmpty = (v: unknown): unknown =>
  typeof v === "string" && v.trim() === "" ? undefined : v;

/**
 * A variable holding a whole number greater than zero (milliseconds, bytes, a count), with its
 * default. `what` names the unit in the error: "milliseconds", "bytes".
 */
export function envPositiveInt(def: number, what: string) {
  return z
    .preprocess(
      unsetIfEmpty,
      z
        .string()
        .trim()
        .regex(/^\d+$/, `must be a whole number of ${what} greater than 0 (default ${def})`)
        .transform(Number)
        .pipe(z.number().int().positive(`must be greater than 0 (default ${def})`))
        .optional(),
    )
    .transform((v) => v ?? def);
}

/** A variable holding a number of zero or more (a price), with its default. */
export function envNonNegative(def: number, what: string) {
  return z
    .preprocess(
      unsetIfEmpty,
      z
        .string()
        .trim()
        .regex(/^\d+(\.\d+)?$/, `must be a number of ${what}, 0 or more (default ${def})`)
        .transform(Number)
        .optional(),
    )
    .transform((v) => v ?? def);
}

/** A variable holding one of a few words, with its default (or none: undefined when unset). */
export function envEnum<const T extends readonly [string, ...string[]]>(values: T) {
  return z.preprocess(
    unsetIfEmpty,
    z.enum(values, { error: () => `must be one of ${values.join(", ")}` }).optional(),
  );
}

/** A variable holding text, undefined when unset or empty. */
export const envText = z.preprocess(unsetIfEmpty, z.string().optional());

/**
 * Parse `env` with `schema` (an object of variable names). Throws a `config_invalid`
 * ValidationError naming every wrong variable, its value and what it must be; the value of a
 * variable whose name says it is secret is not repeated.
 */
export function readEnv<S extends z.ZodObject>(schema: S, env: Env): z.infer<S> {
  const r = schema.safeParse(env);
  if (r.success) return r.data;
  const lines = r.error.issues.map((i) => {
    const name = String(i.path[0] ?? "?");
    const raw = env[name];
    const shown = /PASSWORD|SECRET|KEY$|TOKEN/i.test(name) ? "(hidden)" : JSON.stringify(raw);
    return `${name}=${shown} ${i.message}`;
  });
  throw new ValidationError("config_invalid", `invalid environment: ${lines.join("; ")}`);
}
