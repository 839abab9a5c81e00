#!/usr/bin/env node
import { initTelemetry } from "@trias/telemetry";
import { classify, EXIT } from "./cli-kit.js";
import { buildProgram, normalizeArgv } from "./program.js";

// `trias ledger | head`: the reader went away, which is not an error of ours.
process.stdout.on("error", (e: NodeJS.ErrnoException) => {
  if (e.code === "EPIPE") process.exit(EXIT.ok);
  throw e;
});

const telemetry = await initTelemetry({
  serviceName: "trias-console",
  agentName: "console",
  role: "console",
});
const argv = normalizeArgv(process.argv.slice(2));
const program = buildProgram();
try {
  if (argv.length === 0) {
    program.outputHelp();
    process.exitCode = EXIT.usage;
  } else {
    await program.parseAsync(argv, { from: "user" });
  }
} catch (e) {
  const { exitCode, message } = classify(e);
  if (message) process.stderr.write(`trias: ${message}\n`);
  process.exitCode = exitCode;
}
await telemetry.shutdown();
