import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, isAbsolute, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { z } from "zod";
import { ValidationError } from "@trias/protocol";
import {
  parseYamlAs,
  policyCatalogueProblems,
  PolicyError,
  type LoadedPolicy,
  type PolicyProblem,
} from "@trias/policy";
import { Catalogue } from "./catalogue.js";
import { codePack } from "./code.js";
import { kycPack } from "./kyc.js";
import { ledgerPack, testPack } from "./ledger-pack.js";
import { McpServerConfig } from "./mcp-config.js";
import { isToolPack, type PackHost, type ToolPack } from "./pack.js";

/** The packs shipped with Trias, named `trias:<name>` in a configuration. */
export const BUILTIN_PACKS: Readonly<Record<string, ToolPack>> = {
  "trias:ledger": ledgerPack,
  "trias:test": testPack,
  "trias:kyc": kycPack,
  "trias:code": codePack,
};

/** The file looked for in the working directory when TRIAS_CONFIG is not set. */
export const CONFIG_FILE_NAME = "trias.config.yaml";

export const TriasConfig = z
  .object({
    version: z.literal(1),
    /**
     * Tool packs: `trias:<name>` (shipped), a path to a module (`./packs/notes.mjs`, from the
     * config file's folder), or an npm package name (resolved from the config file's folder).
     * Each module's default export (or its `pack` export) is a defineToolPack(...) value.
     * @default ["trias:ledger", "trias:test", "trias:kyc"] (the demo ledger, the test tools, KYC onboarding)
     */
    packs: z.array(z.string().min(1)).default(["trias:ledger", "trias:test", "trias:kyc"]),
    /** MCP servers whose tools are governed, by name; their tools are `<name>.<tool>`. */
    mcp: z
      .record(
        z
          .string()
          .regex(
            /^[a-z][a-z0-9_-]*$/,
            "MCP server names are lowercase letters, digits, '_' and '-'",
          ),
        McpServerConfig,
      )
      .default({}),
  })
  .strict();
export type TriasConfig = z.infer<typeof TriasConfig>;

/** A configuration refused at load: every problem with file, line and column. */
export class ConfigError extends ValidationError {
  readonly problems: readonly PolicyProblem[];
  constructor(problems: PolicyProblem[]) {
    super(
      "config_invalid",
      problems
        .map((p) => `${p.file}:${p.line}:${p.column}: ${p.path ? p.path + ": " : ""}${p.message}`)
        .join("\n"),
    );
    this.problems = problems;
  }
}

export interface LoadedConfig {
  /** The file read, or null for the built-in default (no file). */
  file: string | null;
  /** Where relative paths in the configuration start. */
  dir: string;
  config: TriasConfig;
  /** Position of each entry, for errors found after parsing (a pack that fails to load). */
  posOf: (path: readonly PropertyKey[]) => { line: number; column: number };
}

/** Where the configuration is: TRIAS_CONFIG, else ./trias.config.yaml if present, else none. */
export function configFileFrom(
  env: Record<string, string | undefined> = process.env,
  cwd = process.cwd(),
): string | null {
  const given = env["TRIAS_CONFIG"];
  if (given !== undefined && given !== "") return isAbsolute(given) ? given : resolve(cwd, given);
  const here = join(cwd, CONFIG_FILE_NAME);
  return existsSync(here) ? here : null;
}

export function parseConfig(text: string, file: string): LoadedConfig {
  const p = parseYamlAs(text, file, TriasConfig, (problems) => new ConfigError(problems));
  return { file, dir: dirname(file), config: p.value, posOf: p.posOf };
}

export function loadConfig(file: string | null, cwd = process.cwd()): LoadedConfig {
  if (file === null)
    return {
      file: null,
      dir: cwd,
      config: TriasConfig.parse({ version: 1 }),
      posOf: () => ({ line: 0, column: 0 }),
    };
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError([
      {
        file,
        line: 0,
        column: 0,
        path: "",
        message: `cannot read the configuration (TRIAS_CONFIG): ${(e as Error).message}`,
      },
    ]);
  }
  return parseConfig(text, file);
}

function problem(cfg: LoadedConfig, path: (string | number)[], message: string): ConfigError {
  return new ConfigError([
    { file: cfg.file ?? "<default config>", ...cfg.posOf(path), path: path.join("."), message },
  ]);
}

async function importPack(cfg: LoadedConfig, ref: string, idx: number): Promise<ToolPack> {
  const builtin = BUILTIN_PACKS[ref];
  if (builtin) return builtin;
  if (ref.startsWith("trias:"))
    throw problem(
      cfg,
      ["packs", idx],
      `no shipped pack "${ref}" (shipped: ${Object.keys(BUILTIN_PACKS).join(", ")})`,
    );
  let url: string;
  if (ref.startsWith(".") || isAbsolute(ref)) {
    const path = resolve(cfg.dir, ref);
    if (!existsSync(path)) throw problem(cfg, ["packs", idx], `pack file ${path} does not exist`);
    url = pathToFileURL(path).href;
  } else {
    try {
      url = pathToFileURL(createRequire(join(cfg.dir, "noop.js")).resolve(ref)).href;
    } catch (e) {
      throw problem(
        cfg,
        ["packs", idx],
        `pack package "${ref}" is not installed where ${cfg.file ?? "the configuration"} is (install it there): ${(e as Error).message.split("\n")[0]}`,
      );
    }
  }
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw problem(
      cfg,
      ["packs", idx],
      `pack ${ref} failed while loading: ${(e as Error).message.split("\n")[0]}`,
    );
  }
  const pack = mod["default"] ?? mod["pack"];
  if (!isToolPack(pack))
    throw problem(
      cfg,
      ["packs", idx],
      `pack ${ref} does not export a tool pack: its default export (or \`pack\`) must be defineToolPack({...}) from @trias/tools`,
    );
  return pack;
}

/** Every pack the configuration names, MCP servers included (each listed now). */
export async function loadPacks(cfg: LoadedConfig): Promise<ToolPack[]> {
  const out: ToolPack[] = [];
  for (const [i, ref] of cfg.config.packs.entries()) out.push(await importPack(cfg, ref, i));
  const servers = Object.entries(cfg.config.mcp);
  // The MCP SDK is loaded only for a configuration that names servers.
  if (servers.length === 0) return out;
  const { mcpPack } = await import("./mcp.js");
  for (const [name, server] of servers) {
    try {
      out.push(await mcpPack(name, server, cfg.dir));
    } catch (e) {
      throw problem(cfg, ["mcp", name], (e as Error).message);
    }
  }
  return out;
}

/**
 * The catalogue of this process, from the configuration. `host`: open the packs' resources
 * (executor and verifier); null elsewhere (tool descriptions only).
 */
export async function loadCatalogue(
  o: { host?: PackHost | null; env?: Record<string, string | undefined>; cwd?: string } = {},
): Promise<{ catalogue: Catalogue; config: LoadedConfig }> {
  const cwd = o.cwd ?? process.cwd();
  const config = loadConfig(configFileFrom(o.env ?? process.env, cwd), cwd);
  const catalogue = await Catalogue.open(await loadPacks(config), o.host ?? null);
  return { catalogue, config };
}

/**
 * The catalogue of an agent process, checked against its policy: a policy entry naming a
 * tool no pack provides stops the process at start, with the entry's line.
 */
export async function loadAgentCatalogue(o: {
  host: PackHost | null;
  policy?: LoadedPolicy;
  env?: Record<string, string | undefined>;
  cwd?: string;
}): Promise<{ catalogue: Catalogue; config: LoadedConfig }> {
  const loaded = await loadCatalogue(o);
  if (o.policy) {
    const problems = policyCatalogueProblems(
      o.policy,
      loaded.catalogue.names(),
      loaded.config.file ??
        `the default configuration (no ${CONFIG_FILE_NAME}, TRIAS_CONFIG unset)`,
    );
    if (problems.length > 0) {
      await loaded.catalogue.close();
      throw new PolicyError(problems);
    }
  }
  return loaded;
}
