import { existsSync } from "node:fs";
import { join } from "node:path";
import type { Command } from "commander";
import { addHuman, initKeyDir, revokeKey, DEFAULT_IDENTITIES } from "@trias/signing";
import { out } from "../cli-kit.js";
import { writeNatsEnv } from "../setup.js";
import { DEFAULT_KEY_DIR } from "../demo.js";

export function registerKeys(program: Command): void {
  const keys = program
    .command("keys")
    .description("identities: one Ed25519 key each, and the registry (JWKS)");
  keys
    .command("init")
    .description(
      "create one key and NATS user per identity, the registry, and nats.env (the server's passwords); existing ones are kept",
    )
    .argument("<dir>", "key directory")
    .action(async (dir: string) => {
      const r = await initKeyDir(dir, DEFAULT_IDENTITIES);
      const env = writeNatsEnv(dir);
      out(
        `keys in ${r.dir}: created ${r.created.join(", ") || "none"}${r.kept.length ? `; kept existing ${r.kept.join(", ")}` : ""}; NATS credentials beside each key, their passwords for the server in ${env}`,
      );
    });
  keys
    .command("add-human")
    .description(
      "register a person: their own Ed25519 key and groups. With --public-key only the public half is registered (the private key stays where it was made, e.g. the browser); else a key pair is made and the private key written for that person alone",
    )
    .argument("<name>", "the person's identity name (lowercase, digits, '-')")
    .requiredOption("--group <group...>", "group(s) the person belongs to, e.g. treasury")
    .option("--public-key <x>", "Ed25519 public key, base64url (JWK x), made elsewhere")
    .option("--out <file>", "where a generated private key goes (default <dir>/<name>.key.json)")
    .option("--dir <dir>", "key directory", process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR)
    .action(
      async (
        name: string,
        o: { group: string[]; publicKey?: string; out?: string; dir: string },
      ) => {
        const r = await addHuman(o.dir, name, {
          groups: o.group,
          ...(o.publicKey !== undefined ? { publicX: o.publicKey } : {}),
          ...(o.out !== undefined ? { privateKeyFile: o.out } : {}),
        });
        // The server's environment file, when this key dir has one, gets the new password.
        const env = existsSync(join(o.dir, "nats.env")) ? writeNatsEnv(o.dir) : null;
        out(
          `registered ${r.entry.name} (${r.entry.kid}) in group(s) ${o.group.join(", ")}${r.privateKeyFile ? `; private key in ${r.privateKeyFile} (give it to ${name} alone)` : "; public key only"}`,
        );
        out(
          `NATS user ${name} (role human: publishes human verdicts and orders, reads the trace): credentials in ${r.natsCredentialsFile}${env ? `, password added to ${env}` : ""}; the server serves it once its configuration is regenerated (trias nats-config --key-dir ${o.dir}) and reloaded`,
        );
      },
    );
  keys
    .command("revoke")
    .description("mark a key revoked in the registry")
    .argument("<dir>", "key directory")
    .argument("<name|kid>", "identity name or key id")
    .action((dir: string, target: string) => {
      const k = revokeKey(dir, target);
      out(`revoked ${k.name} (${k.kid}); agents refuse its messages once they reload the registry`);
    });
}
