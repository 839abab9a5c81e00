import type { Command } from "commander";
import { initKeyDir, revokeKey, DEFAULT_IDENTITIES } from "@trias/signing";
import { out } from "../cli-kit.js";

export function registerKeys(program: Command): void {
  const keys = program
    .command("keys")
    .description("identities: one Ed25519 key each, and the registry (JWKS)");
  keys
    .command("init")
    .description("create one key per agent identity and the registry; existing keys are kept")
    .argument("<dir>", "key directory")
    .action(async (dir: string) => {
      const r = await initKeyDir(dir, DEFAULT_IDENTITIES);
      out(
        `keys in ${r.dir}: created ${r.created.join(", ") || "none"}${r.kept.length ? `; kept existing ${r.kept.join(", ")}` : ""}`,
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
