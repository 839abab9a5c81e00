import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { Bus, findNatsServer, freePort, isPermissionError, passwordEnvVar } from "@trias/bus";
import { deployNatsConfig, deploymentUsers } from "./setup.js";

const shipped = join(import.meta.dirname, "..", "..", "..", "deploy", "nats", "nats.conf");

describe("deploy", () => {
  it("deploy - the shipped NATS config is the generated one (regenerate: pnpm trias nats-config > deploy/nats/nats.conf)", () => {
    expect(readFileSync(shipped, "utf8")).toBe(deployNatsConfig() + "\n");
  });

  it("deploy - a real nats-server runs the shipped config: roles publish only their own subjects", async () => {
    const bin = findNatsServer();
    expect(bin, "nats-server must be installed").not.toBeNull();
    const port = await freePort();
    const passwords = Object.fromEntries(
      deploymentUsers().map((u) => [passwordEnvVar(u.user), `${u.user}-password`]),
    );
    // The shipped file as is, but for where JetStream keeps its files (a temp dir, not /data).
    const dir = mkdtempSync(join(tmpdir(), "trias-deploy-"));
    const conf = join(dir, "nats.conf");
    writeFileSync(
      conf,
      readFileSync(shipped, "utf8").replace('"/data/jetstream"', JSON.stringify(join(dir, "js"))),
    );
    const server = spawn(
      bin ?? "nats-server",
      ["-c", conf, "-a", "127.0.0.1", "-p", String(port)],
      {
        env: { ...process.env, ...passwords },
        stdio: "ignore",
      },
    );
    try {
      const admin = await Bus.connect({
        servers: `nats://127.0.0.1:${port}`,
        name: "admin",
        user: "admin",
        pass: "admin-password",
      });
      await admin.ensureStream();
      const proposer = await Bus.connect({
        servers: `nats://127.0.0.1:${port}`,
        name: "proposer",
        user: "proposer",
        pass: "proposer-password",
      });
      await expect(
        proposer.publish("trias.proposer.step_proposed.r1", new Uint8Array([1]), { msgId: "d1" }),
      ).resolves.toMatchObject({ seq: 1 });
      await expect(
        proposer.publish("trias.executor.step_executed.r1", new Uint8Array([1]), { msgId: "d2" }),
      ).rejects.toSatisfy(isPermissionError);
      await expect(proposer.deleteStream()).rejects.toSatisfy(isPermissionError);
      await expect(
        Bus.connect({
          servers: `nats://127.0.0.1:${port}`,
          name: "x",
          user: "proposer",
          pass: "wrong",
          connectTimeoutMs: 2000,
        }),
      ).rejects.toThrow(/Authorization|cannot connect/);
      await proposer.drain();
      await admin.drain();
    } finally {
      server.kill("SIGTERM");
    }
  });
});
