import type { Command } from "commander";
import { initKeyDir, revokeKey, DEFAULT_IDENTITIES } from "@trias/signing";
import { out } from "../cli-kit.js";
import { writeNatsEnv } from "../setup.js";

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
    .command("revoke")
    .description("mark a key revoked in the registry")
    .argument("<dir>", "key directory")
    .argument("<name|kid>", "identity name or key id")
    .action((dir: string, target: string) => {
      const k = revokeKey(dir, target);
      out(`revoked ${k.name} (${k.kid}); agents refuse its messages once they reload the registry`);
    });
}
