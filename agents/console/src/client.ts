import { randomBytes } from "node:crypto";
import { type Bus, type StoredMessage, type Subscription } from "@trias/bus";
import {
  type JsonObject,
  type MessageOf,
  type RunOutcome,
  type TaskSubmitted,
} from "@trias/protocol";
import { type KeyRegistry, type Signer, type Opened } from "@trias/signing";
import { AgentHost, silentLogger, type Logger } from "@trias/runtime";
import { triasAttributes, withSpan } from "@trias/telemetry";

export function newRunId(now = Date.now()): string {
  return `run-${now.toString(36)}-${randomBytes(3).toString("hex")}`;
}

/** What the console does on the bus: submit tasks (signed as the console), follow runs. */
export class ConsoleClient {
  readonly bus: Bus;
  readonly registry: KeyRegistry;
  readonly host: AgentHost;

  constructor(bus: Bus, signer: Signer, registry: KeyRegistry, log: Logger = silentLogger) {
    this.bus = bus;
    this.registry = registry;
    this.host = new AgentHost({ name: signer.name, bus, signer, registry, log });
  }

  async submit(task: TaskSubmitted, run = newRunId()): Promise<{ run: string; seq: number }> {
    const body = await this.#argumentsByReference(task);
    // The root span of the run's trace: every agent's span for this run descends from it.
    const e = await withSpan(
      "trias.run",
      { root: true, attributes: triasAttributes({ run, agent: this.host.name, role: "console" }) },
      () =>
        this.host.emit("task_submitted", {
          id: `task-${run}`,
          run,
          step: null,
          attempt: 0,
          body,
        }),
    );
    return { run, seq: e.seq };
  }

  /**
   * The explicit steps of a task with each large argument object stored in the payloads
   * bucket and a reference in its place (docs/security.md, "Bounded messages end to end"), so
   * the task and every frame of its steps fit whatever the arguments' size. Small arguments,
   * and every other program's input, are left as they are (nothing written).
   */
  async #argumentsByReference(task: TaskSubmitted): Promise<TaskSubmitted> {
    const steps = task.program === "steps" ? task.input["steps"] : undefined;
    if (!Array.isArray(steps)) return task;
    const out = await Promise.all(
      steps.map(async (s) => {
        if (!isObject(s) || !isObject(s["args"])) return s;
        return { ...s, args: await this.host.payloads.store(s["args"]) };
      }),
    );
    return { ...task, input: { ...task.input, steps: out } };
  }

  /** Follow every message from `fromSeq` on; each is opened (signature checked) before use. */
  async follow(
    onMessage: (o: Opened | null, raw: StoredMessage, err?: unknown) => void,
    fromSeq?: number,
  ): Promise<Subscription> {
    return this.bus.watch(
      "trias.>",
      (raw) => {
        try {
          onMessage(this.registry.open(raw.data), raw);
        } catch (e) {
          onMessage(null, raw, e);
        }
      },
      fromSeq !== undefined ? { fromSeq } : {},
    );
  }

  /** Resolve when every run in `runs` has a run_closed message. */
  async waitForClose(
    runs: readonly string[],
    timeoutMs: number,
    onMessage?: (o: Opened | null, raw: StoredMessage, err?: unknown) => void,
    fromSeq = 1,
  ): Promise<Map<string, MessageOf<"run_closed">>> {
    const closed = new Map<string, MessageOf<"run_closed">>();
    const want = new Set(runs);
    let done!: () => void;
    const all = new Promise<void>((r) => (done = r));
    const sub = await this.follow((o, raw, err) => {
      onMessage?.(o, raw, err);
      if (o?.message.kind === "run_closed" && want.has(o.message.run)) {
        closed.set(o.message.run, o.message);
        if (closed.size === want.size) done();
      }
    }, fromSeq);
    const timer = setTimeout(done, timeoutMs);
    await all;
    clearTimeout(timer);
    await sub.stop();
    return closed;
  }
}

function isObject(v: unknown): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export type { RunOutcome };
