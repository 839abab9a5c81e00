import { z } from "zod";
import { ValidationError, type Check, type JsonObject, type JsonValue } from "@trias/protocol";
import type {
  CompensationOrder,
  EffectContext,
  ObjectsSpec,
  PackHost,
  Tool,
  ToolPack,
} from "./pack.js";
import type { Operation } from "@trias/policy";

/** A tool as the agents see it: bound to its pack's resources in this process. */
export interface ToolDef {
  readonly name: string;
  readonly pack: string;
  readonly description: string;
  readonly input: z.ZodType;
  /** The input as JSON Schema: what a model or an MCP client is shown. */
  readonly jsonSchema: Record<string, unknown>;
  readonly op: Operation;
  readonly domains: readonly string[];
  readonly objects: ObjectsSpec;
  readonly idempotent: boolean;
  run(args: JsonObject, ctx: EffectContext): Promise<JsonValue>;
  compensate(args: JsonObject, result: JsonValue): CompensationOrder | null;
  verify(args: JsonObject, result: JsonValue, ctx: EffectContext): Promise<Check[]>;
}

interface OpenPack {
  pack: ToolPack;
  resources: unknown;
  opened: boolean;
}

/**
 * The tools this process knows, built from the project configuration (packs and MCP
 * servers) and handed to each agent that needs it; there is no global tool map. Only the
 * executor and the verifier open the packs' resources: elsewhere a tool is a description.
 */
export class Catalogue {
  readonly #tools = new Map<string, ToolDef>();
  readonly #packs: OpenPack[];

  private constructor(packs: OpenPack[]) {
    this.#packs = packs;
    for (const p of packs) {
      for (const t of p.pack.tools) {
        const prior = this.#tools.get(t.name);
        if (prior)
          throw new ValidationError(
            "config_invalid",
            `tool ${t.name} is defined by both pack ${prior.pack} and pack ${p.pack.name}: rename one`,
          );
        this.#tools.set(t.name, bind(t, p));
      }
    }
  }

  /** Build a catalogue; with a host, each pack's resources are opened for this process. */
  static async open(packs: readonly ToolPack[], host: PackHost | null): Promise<Catalogue> {
    const open: OpenPack[] = [];
    try {
      for (const pack of packs) {
        if (host && pack.open) {
          open.push({ pack, resources: await pack.open(host), opened: true });
        } else open.push({ pack, resources: undefined, opened: false });
      }
      return new Catalogue(open);
    } catch (e) {
      await closeAll(open);
      throw e;
    }
  }

  get(name: string): ToolDef | undefined {
    return this.#tools.get(name);
  }

  has(name: string): boolean {
    return this.#tools.has(name);
  }

  names(): string[] {
    return [...this.#tools.keys()];
  }

  tools(): ToolDef[] {
    return [...this.#tools.values()];
  }

  packs(): string[] {
    return this.#packs.map((p) => p.pack.name);
  }

  /** The tool, or an error that lists what is known. */
  require(name: string): ToolDef {
    const t = this.#tools.get(name);
    if (!t)
      throw new ValidationError(
        "tool_unknown",
        `no tool named "${name}" in the loaded packs (known: ${this.names().join(", ")})`,
      );
    return t;
  }

  async close(): Promise<void> {
    await closeAll(this.#packs);
  }
}

async function closeAll(packs: OpenPack[]): Promise<void> {
  for (const p of packs) {
    if (!p.opened || !p.pack.close) continue;
    try {
      await p.pack.close(p.resources);
    } catch {
      // Closing is best effort: the process is going away.
    }
  }
}

function bind(t: Tool, p: OpenPack): ToolDef {
  const ctx = (c: EffectContext) => {
    if (!p.opened && p.pack.open)
      throw new ValidationError(
        "config_invalid",
        `pack ${p.pack.name} is not open in this process: only the executor runs tools and only the verifier checks them`,
      );
    return { ...c, resources: p.resources };
  };
  return {
    name: t.name,
    pack: p.pack.name,
    description: t.description,
    input: t.input,
    jsonSchema: t.jsonSchema,
    op: t.op,
    domains: t.domains,
    objects: t.objects,
    idempotent: t.idempotent,
    run: async (args, c) => t.run(args, ctx(c)),
    compensate: (args, result) => t.compensate(args, result),
    verify: async (args, result, c) => t.verify(args, result, ctx(c)),
  };
}

/** Validate arguments against the tool's input schema; the error names each bad field. */
export function checkArgs(
  tool: { input: z.ZodType },
  args: JsonObject,
): { ok: true } | { ok: false; reason: string } {
  const r = tool.input.safeParse(args);
  return r.success
    ? { ok: true }
    : { ok: false, reason: z.prettifyError(r.error).replace(/\n/g, "; ") };
}
