#!/usr/bin/env node
import { parseArgs } from "node:util";
import { findNatsServer, NATS_INSTALL_HINT } from "@trias/bus";
import { isTriasError } from "@trias/protocol";
import { initKeyDir, revokeKey, DEFAULT_IDENTITIES } from "@trias/signing";
import { initTelemetry } from "@trias/telemetry";
import { runDemo, DEFAULT_KEY_DIR, DEFAULT_LOG_ROOT } from "./demo.js";

const USAGE = `trias: a governed execution runtime for AI agents

usage:
  trias demo [--env dev|staging|prod] [--timeout-ms N]   the main job: a full governed run set on an embedded nats-server
  trias keys init <dir>                                  one Ed25519 key per agent identity + the registry (JWKS)
  trias keys revoke <dir> <name|kid>                     mark a key revoked in the registry

environment: NATS_URL (use a running server instead of the embedded one), TRIAS_ENV, TRIAS_KEY_DIR, LOG_LEVEL`;

function out(line: string): void {
  process.stdout.write(line + "\n");
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  switch (cmd) {
    case "demo": {
      const { values } = parseArgs({
        args: rest,
        options: { env: { type: "string" }, "timeout-ms": { type: "string" } },
      });
      const natsUrl = process.env["NATS_URL"];
      if (!natsUrl && !findNatsServer()) {
        out(NATS_INSTALL_HINT);
        return 1;
      }
      return runDemo({
        environment: values.env ?? process.env["TRIAS_ENV"] ?? "dev",
        keyDir: process.env["TRIAS_KEY_DIR"] ?? DEFAULT_KEY_DIR,
        logRoot: DEFAULT_LOG_ROOT,
        ...(natsUrl ? { natsUrl } : {}),
        timeoutMs: Number(values["timeout-ms"] ?? 60_000),
        out,
      });
    }
    case "keys": {
      const [sub, dir, target] = rest;
      if (sub === "init" && dir) {
        const r = await initKeyDir(dir, DEFAULT_IDENTITIES);
        out(
          `keys in ${r.dir}: created ${r.created.join(", ") || "none"}${r.kept.length ? `; kept existing ${r.kept.join(", ")}` : ""}`,
        );
        return 0;
      }
      if (sub === "revoke" && dir && target) {
        const k = revokeKey(dir, target);
        out(
          `revoked ${k.name} (${k.kid}); agents refuse its messages once they reload the registry`,
        );
        return 0;
      }
      out(USAGE);
      return 2;
    }
    case undefined:
    case "help":
    case "--help":
    case "-h":
      out(USAGE);
      return cmd === undefined ? 2 : 0;
    default:
      out(`unknown command "${cmd}"\n\n${USAGE}`);
      return 2;
  }
}

const telemetry = await initTelemetry({ serviceName: "trias-console", agentName: "console", role: "console" });
try {
  process.exitCode = await main(process.argv.slice(2));
  await telemetry.shutdown();
} catch (e) {
  process.stderr.write(
    `trias: ${isTriasError(e) ? `${e.code}: ${e.message}` : e instanceof Error ? e.message : String(e)}\n`,
  );
  process.exitCode = 1;
}
