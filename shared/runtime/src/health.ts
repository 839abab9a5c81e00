import { rmSync, writeFileSync } from "node:fs";
import type { Bus } from "@trias/bus";

/**
 * Keeps `path` present while the bus is connected and removes it while it is not (and when the
 * connection closes), so a container healthcheck can be `test -f <path>` (no process to
 * start, no port to open). Set by TRIAS_HEALTH_FILE; see docs/containers.md.
 */
export function keepHealthFile(bus: Bus, path: string): void {
  const mark = (up: boolean) => {
    try {
      if (up) writeFileSync(path, `${process.pid}\n`);
      else rmSync(path, { force: true });
    } catch {
      // A health file that cannot be written only makes the container look unhealthy.
    }
  };
  mark(true);
  void (async () => {
    for await (const s of bus.connectionStatus()) {
      if (s.type === "disconnect") mark(false);
      else if (s.type === "reconnect") mark(true);
    }
  })();
  void bus.connectionClosed().then(() => mark(false));
  process.once("exit", () => mark(false));
}
