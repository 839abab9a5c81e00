import { existsSync } from "node:fs";
import { LocalNatsServer, natsConfig, type NatsUser } from "@trias/bus";

/** A nats-server a test owns: its own port and store, removed on stop. */
export interface TestNats {
  url: string;
  kind: "container" | "binary";
  /** Stop and start the server keeping its store (a restart mid-run). */
  restart(): Promise<void>;
  /** Serve these users from now on (a configuration reload, no restart). */
  reload(users: readonly NatsUser[]): Promise<void>;
  stop(): Promise<void>;
}

/** Does a Docker engine answer here? Only then are containers worth trying. */
export async function dockerAvailable(): Promise<boolean> {
  if (process.env["TRIAS_TEST_NO_DOCKER"]) return false;
  const sock = process.env["DOCKER_HOST"] ?? "/var/run/docker.sock";
  if (!process.env["DOCKER_HOST"] && !existsSync(sock)) return false;
  try {
    const { getContainerRuntimeClient } = await import("testcontainers");
    await getContainerRuntimeClient();
    return true;
  } catch {
    return false;
  }
}

export const NATS_IMAGE = "nats:2.10-alpine";

async function startContainer(users: readonly NatsUser[]): Promise<TestNats> {
  const { GenericContainer, Wait } = await import("testcontainers");
  const conf = natsConfig({ host: "0.0.0.0", port: 4222, storeDir: "/data", users });
  const container = await new GenericContainer(NATS_IMAGE)
    .withCopyContentToContainer([{ content: conf, target: "/etc/nats/nats.conf" }])
    .withCommand(["-c", "/etc/nats/nats.conf"])
    .withExposedPorts(4222)
    .withWaitStrategy(Wait.forLogMessage(/Server is ready/))
    .start();
  const url = `nats://${container.getHost()}:${container.getMappedPort(4222)}`;
  return {
    url,
    kind: "container",
    restart: async () => {
      await container.restart();
    },
    reload: async (next) => {
      await container.copyContentToContainer([
        {
          content: natsConfig({ host: "0.0.0.0", port: 4222, storeDir: "/data", users: next }),
          target: "/etc/nats/nats.conf",
        },
      ]);
      // nats-server is the container's first process; SIGHUP reloads its configuration.
      await container.exec(["kill", "-HUP", "1"]);
    },
    stop: async () => {
      await container.stop();
    },
  };
}

/** Start a server for one test file, with the per-role users given. */
export async function startTestNats(users: readonly NatsUser[] = []): Promise<TestNats> {
  if (await dockerAvailable()) return startContainer(users);
  const s = await LocalNatsServer.start({ users });
  return {
    url: s.url,
    kind: "binary",
    restart: () => s.restart(),
    reload: (next) => Promise.resolve(s.reload(next)),
    stop: () => s.stop(),
  };
}
