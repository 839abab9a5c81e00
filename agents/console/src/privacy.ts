import { randomBytes } from "node:crypto";
import type { Bus } from "@trias/bus";
import { SUBJECT_KEYS_BUCKET } from "@trias/bus";
import { ValidationError, type JsonObject } from "@trias/protocol";
import { checkSubject, sealFields, SubjectKeys } from "@trias/tools";
import type { ConsoleClient } from "./client.js";

/** The key store as the console (admin credentials) sees it: it creates and destroys keys. */
export async function subjectKeys(bus: Bus): Promise<SubjectKeys> {
  return new SubjectKeys(await bus.kv(SUBJECT_KEYS_BUCKET));
}

/**
 * Seal a task's personal fields before it is signed (docs/privacy.md): a program's input
 * with `subject` and a `personal` object of strings leaves the console with every personal
 * value sealed under the subject's key. Other inputs pass unchanged.
 */
export async function sealTaskInput(
  keys: () => Promise<SubjectKeys>,
  input: JsonObject,
): Promise<JsonObject> {
  const personal = input["personal"];
  if (personal === undefined) return input;
  const subject = input["subject"];
  if (typeof subject !== "string")
    throw new ValidationError(
      "schema_invalid",
      'personal data needs a "subject": the customer number its key is kept under (e.g. "subject": "c-1042")',
    );
  if (
    !personal ||
    typeof personal !== "object" ||
    Array.isArray(personal) ||
    !Object.values(personal).every((v) => typeof v === "string")
  )
    throw new ValidationError(
      "schema_invalid",
      '"personal" must be an object of strings, e.g. {"name":"Ada Lovelace","email":"ada@example.org"}',
    );
  return {
    ...input,
    personal: await sealFields(
      await keys(),
      checkSubject(subject),
      personal as Record<string, string>,
    ),
  };
}

/**
 * `trias erase`: destroy the subject's key (overwritten on the server, not only marked
 * deleted), then record the erasure, signed by the console, in a run of its own.
 */
export async function eraseSubject(
  client: ConsoleClient,
  subject: string,
  reason: string,
  requestedBy: string,
): Promise<{ run: string; keyDestroyed: boolean }> {
  checkSubject(subject);
  const keys = await subjectKeys(client.bus);
  const stream = `KV_${SUBJECT_KEYS_BUCKET}`;
  const keyDestroyed = await keys.erase(subject, async (seq) => {
    await client.bus.eraseMessage(stream, seq);
  });
  const run = `erase-${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
  await client.host.emit("subject_erased", {
    id: `erasure-${run}`,
    run,
    step: null,
    attempt: 0,
    body: { subject, reason, requestedBy, keyDestroyed },
  });
  return { run, keyDestroyed };
}
