/**
 * `pnpm bench`: the cost of governance, measured side by side with the raw bus in one run.
 *
 *   pnpm bench                      baseline 4-hop, signed 4-hop and governed light/standard/full,
 *                                   1 and 32 in flight
 *   pnpm bench --memory [--steps N] RSS of each agent over N light steps (default 100,000)
 *   pnpm bench --mcp                a governed MCP tool call against the same call made directly
 *   pnpm bench --coldpath           only `trias pending` and `trias audit <run>` at 10,000 and
 *                                   200,000 stored messages, before and after the indexed reads
 *   pnpm bench --replicas           light steps with one replica of each agent against two
 *   pnpm bench --cluster            light steps on one server against a 3-node cluster at R3
 *
 * A governed step is a step of a run of --steps-per-run (20) no-op steps: its latency is
 * from the previous step's verification to its own, once around proposer, router,
 * reviewers, executor and verifier, as the baseline's message goes once around four hops.
 * Runs of one step (submission to receipt, run set-up and close included) are measured too.
 *
 * Options: --rounds N (3), --seconds S per measured interval (2.5), --inflight 1,32,
 * --steps-per-run N (20),
 * --tiers light,standard,full, --profile DIR (agents write --cpu-prof profiles there),
 * --node-options=... (NODE_OPTIONS for the agents, e.g. heap flags), --no-policy,
 * --keep (keep keys and agent logs), --verbose, --out FILE.
 */
import { execFileSync } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { cpus, release, totalmem, type } from "node:os";
import { dirname, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { findNatsServer } from "@trias/bus";
import { REPO_ROOT } from "@trias/console";
import { Baseline, HOP_PHASES } from "./baseline.js";
import { Governed, PHASES, TIERS, type Segment, type Tier } from "./governed.js";
import { benchPolicy, type PolicyBenchResult } from "./policy-bench.js";
import { MACHINE, rssBytes } from "./proc.js";
import { benchRecovery } from "./recovery.js";
import { benchMcp, type McpBenchResult } from "./mcp.js";
import { benchColdPaths, coldPathLines, type ColdPathResult } from "./coldpath.js";
import { DEPLOYMENTS, benchVariants } from "./replicas.js";
import { dist, ratio, round, type Dist } from "./stats.js";

const USAGE = `usage: pnpm bench [--rounds N] [--seconds S] [--inflight 1,32] [--tiers light,standard,full]
                  [--steps-per-run N] [--profile DIR] [--node-options=...] [--no-policy] [--keep] [--verbose] [--out FILE]
       pnpm bench --memory [--steps N] [--steps-per-run N]
       pnpm bench --mcp                (only the governed vs direct MCP tool call)
       pnpm bench --coldpath           (only pending and audit against the trace's size)
       pnpm bench --replicas | --cluster [--rounds N] [--seconds S] [--inflight 1,32]
                                       (light steps: one replica of each agent against two,
                                        or one server against a 3-node cluster at R3)`;

function parseOptions() {
  try {
    return parseArgs({ options: OPTIONS });
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
}

const OPTIONS = {
  memory: { type: "boolean", default: false },
  mcp: { type: "boolean", default: false },
  coldpath: { type: "boolean", default: false },
  replicas: { type: "boolean", default: false },
  cluster: { type: "boolean", default: false },
  steps: { type: "string" },
  "steps-per-run": { type: "string", default: "20" },
  rounds: { type: "string", default: "3" },
  seconds: { type: "string", default: "2.5" },
  inflight: { type: "string", default: "1,32" },
  tiers: { type: "string", default: TIERS.join(",") },
  profile: { type: "string" },
  "node-options": { type: "string" },
  "no-policy": { type: "boolean", default: false },
  keep: { type: "boolean", default: false },
  verbose: { type: "boolean", default: false },
  out: { type: "string" },
  help: { type: "boolean", default: false },
} as const;

const { values: args } = parseOptions();
if (args.help) {
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

const verbose = args.verbose;

// On Ctrl-C, take down every process this bench started (agents, hops, nats-server).
const started = new Set<number>();
const tempDirs = new Set<string>();
function track(pids: Iterable<number | undefined>, dir?: string): void {
  for (const p of pids) if (p !== undefined && p > 0) started.add(p);
  if (dir) tempDirs.add(dir);
}
for (const sig of ["SIGINT", "SIGTERM"] as const) {
  process.once(sig, () => {
    for (const pid of started) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // already gone
      }
    }
    for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
    process.exit(130);
  });
}

function out(line = ""): void {
  process.stdout.write(line + "\n");
}

function machine(): Record<string, unknown> {
  let nats = "unknown";
  const bin = findNatsServer();
  if (bin) {
    try {
      nats = execFileSync(bin, ["--version"], { encoding: "utf8" }).trim();
    } catch {
      // keep "unknown"
    }
  }
  const c = cpus();
  return {
    os: `${type()} ${release()}`,
    cpus: c.length,
    cpuModel: c[0]?.model ?? "unknown",
    memoryGb: round(totalmem() / 2 ** 30, 1),
    node: process.version,
    natsServer: nats,
  };
}

interface CaseResult {
  name: string;
  kind: Kind;
  tier: Tier | null;
  /** Steps per governed run (null for the baseline). */
  stepsPerRun: number | null;
  inFlight: number;
  steps: number;
  failures: number;
  stepsPerSec: number;
  latencyMs: Dist;
  phasesMs: Record<string, Dist>;
  /** CPU milliseconds per step: the pipeline's processes (hops or agents), each, and the server. */
  cpuPerStepMs: {
    pipeline: number;
    server: number;
    driver: number;
    byProcess: Record<string, number>;
  };
  /** CPU used meanwhile by processes outside this bench (cores): other load skews figures. */
  otherLoadCores: number;
  rounds: { steps: number; wallMs: number; stepsPerSec: number; p50: number }[];
  vsBaseline?: { p50: number; p99: number; stepsPerSec: number; cpu: number };
  /** Governed cases: against the signed 4-hop, what Trias costs beyond signing each hop. */
  vsSigned?: { p50: number; stepsPerSec: number; cpu: number };
}

/** A case's figures as ratios to a reference case's at the same number in flight. */
function against(c: CaseResult, ref: CaseResult): NonNullable<CaseResult["vsBaseline"]> {
  return {
    p50: ratio(c.latencyMs.p50, ref.latencyMs.p50),
    p99: ratio(c.latencyMs.p99, ref.latencyMs.p99),
    stepsPerSec: ratio(c.stepsPerSec, ref.stepsPerSec),
    cpu: ratio(c.cpuPerStepMs.pipeline, ref.cpuPerStepMs.pipeline),
  };
}

/** Plain 4-hop (the baseline), signed 4-hop (the signatures' floor), or the agents. */
type Kind = "baseline" | "signed" | "governed";

class Accumulator {
  readonly segments: Segment[] = [];
  add(s: Segment): void {
    this.segments.push(s);
  }
  result(
    name: string,
    kind: Kind,
    tier: Tier | null,
    stepsPerRun: number | null,
    inFlight: number,
    pipeline: readonly string[],
    phaseNames: readonly string[],
  ): CaseResult {
    const steps = this.segments.reduce((a, s) => a + s.steps, 0);
    const wall = this.segments.reduce((a, s) => a + s.wallMs, 0);
    const cpu: Record<string, number> = {};
    for (const s of this.segments)
      for (const [k, v] of Object.entries(s.cpuMs)) cpu[k] = (cpu[k] ?? 0) + v;
    const per = (k: string) => (steps > 0 ? round((cpu[k] ?? 0) / steps, 3) : Number.NaN);
    const byProcess = Object.fromEntries(pipeline.map((k) => [k, per(k)]));
    const ours = Object.entries(cpu)
      .filter(([k]) => k !== MACHINE)
      .reduce((a, [, v]) => a + v, 0);
    const other = cpu[MACHINE] !== undefined ? Math.max(0, cpu[MACHINE] - ours) : Number.NaN;
    const phasesMs: Record<string, Dist> = {};
    for (const p of phaseNames) {
      const all = this.segments.flatMap((s) => s.phases[p] ?? []);
      if (all.length > 0) phasesMs[p] = dist(all);
    }
    return {
      name,
      kind,
      tier,
      stepsPerRun,
      inFlight,
      steps,
      failures: this.segments.reduce((a, s) => a + s.failures.length, 0),
      stepsPerSec: wall > 0 ? round((steps * 1000) / wall, 1) : 0,
      latencyMs: dist(this.segments.flatMap((s) => s.latencies)),
      phasesMs,
      cpuPerStepMs: {
        pipeline: round(pipeline.reduce((a, k) => a + (cpu[k] ?? 0), 0) / Math.max(1, steps), 3),
        server: per("nats-server"),
        driver: per("driver"),
        byProcess,
      },
      otherLoadCores: wall > 0 ? round(other / wall, 2) : Number.NaN,
      rounds: this.segments.map((s) => ({
        steps: s.steps,
        wallMs: round(s.wallMs, 1),
        stepsPerSec: s.wallMs > 0 ? round((s.steps * 1000) / s.wallMs, 1) : 0,
        p50: dist(s.latencies).p50,
      })),
    };
  }
}

function pad(s: string | number, n: number, left = false): string {
  const t = typeof s === "number" ? (Number.isFinite(s) ? String(s) : "-") : s;
  return left ? t.padEnd(n) : t.padStart(n);
}

function fmt(x: number, d = 2): string {
  return Number.isFinite(x) ? x.toFixed(d) : "-";
}

function printCases(cases: readonly CaseResult[]): void {
  out(
    `${pad("case", 18, true)}${pad("in flight", 10)}${pad("steps", 8)}${pad("steps/s", 10)}${pad("failed", 8)}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("CPU ms/step", 13)}${pad("server", 8)}${pad("x p50", 8)}${pad("x p99", 8)}${pad("x steps/s", 11)}${pad("x CPU", 8)}`,
  );
  for (const c of cases) {
    const v = c.vsBaseline;
    out(
      `${pad(c.name, 18, true)}${pad(c.inFlight, 10)}${pad(c.steps, 8)}${pad(fmt(c.stepsPerSec, 0), 10)}${pad(c.failures, 8)}${pad(fmt(c.latencyMs.p50), 9)}${pad(fmt(c.latencyMs.p99), 9)}${pad(fmt(c.cpuPerStepMs.pipeline), 13)}${pad(fmt(c.cpuPerStepMs.server), 8)}${pad(v ? fmt(v.p50) : "", 8)}${pad(v ? fmt(v.p99) : "", 8)}${pad(v ? fmt(v.stepsPerSec) : "", 11)}${pad(v ? fmt(v.cpu) : "", 8)}`,
    );
  }
}

function printPhases(cases: readonly CaseResult[]): void {
  out("per phase, p50 / p99 ms (server store timestamps):");
  for (const c of cases) {
    const ps = Object.entries(c.phasesMs)
      .map(([p, d]) => `${p} ${fmt(d.p50)} / ${fmt(d.p99)}`)
      .join("   ");
    out(`  ${pad(c.name, 18, true)}${pad(c.inFlight, 3)}   ${ps}`);
  }
}

function printCpu(cases: readonly CaseResult[]): void {
  out("CPU ms per step, by process:");
  for (const c of cases) {
    const ps = Object.entries(c.cpuPerStepMs.byProcess)
      .map(([p, v]) => `${p} ${fmt(v, 3)}`)
      .join("  ");
    out(
      `  ${pad(c.name, 18, true)}${pad(c.inFlight, 3)}   ${ps}   (nats-server ${fmt(c.cpuPerStepMs.server, 3)}, driver ${fmt(c.cpuPerStepMs.driver, 3)})`,
    );
  }
  const busy = Math.max(...cases.map((c) => c.otherLoadCores).filter(Number.isFinite), 0);
  out(
    busy > 0.15
      ? `warning: other processes used up to ${fmt(busy)} cores during the measurements; figures are skewed`
      : `other load on the machine during the measurements: at most ${fmt(busy)} cores`,
  );
}

interface GovCase {
  key: string;
  name: string;
  tier: Tier;
  stepsPerRun: number;
}

function stepsPerRunOption(): number {
  const n = Number(args["steps-per-run"]);
  // The dev policy's budget is 50 steps per run.
  if (!Number.isInteger(n) || n < 1 || n > 50) {
    process.stderr.write(
      `--steps-per-run must be a whole number from 1 to 50 (the dev policy's step budget), not ${args["steps-per-run"]}\n`,
    );
    process.exit(2);
  }
  return n;
}

interface Target {
  name: string;
  value: number;
  limit: string;
  met: boolean;
  /** The same figure for the signed 4-hop: what signing every hop alone reaches. */
  signedFloor?: number;
}

function targets(cases: readonly CaseResult[], stepsPerRun: number): Target[] {
  const find = (kind: string, tier: Tier | null, n: number) =>
    cases.find(
      (c) =>
        c.kind === kind &&
        c.tier === tier &&
        c.inFlight === n &&
        (tier === null || c.stepsPerRun === stepsPerRun),
    );
  const t: Target[] = [];
  const b1 = find("baseline", null, 1);
  const b32 = find("baseline", null, 32);
  const s1 = find("signed", null, 1);
  const s32 = find("signed", null, 32);
  const l1 = find("governed", "light", 1);
  const l32 = find("governed", "light", 32);
  const f1 = find("governed", "full", 1);
  const floor = (x: number | undefined) => (x !== undefined ? { signedFloor: x } : {});
  if (b1 && l1) {
    const r = ratio(l1.latencyMs.p50, b1.latencyMs.p50);
    t.push({
      name: "light, 1 in flight: p50 / baseline p50",
      value: r,
      limit: "<= 2",
      met: r <= 2,
      ...floor(s1 && ratio(s1.latencyMs.p50, b1.latencyMs.p50)),
    });
    t.push({
      name: "light, 1 in flight: p99 (ms)",
      value: l1.latencyMs.p99,
      limit: "< 10",
      met: l1.latencyMs.p99 < 10,
      ...floor(s1?.latencyMs.p99),
    });
  }
  if (b32 && l32) {
    const r = ratio(l32.stepsPerSec, b32.stepsPerSec);
    t.push({
      name: "light, 32 in flight: steps/s / baseline",
      value: r,
      limit: ">= 0.35",
      met: r >= 0.35,
      ...floor(s32 && ratio(s32.stepsPerSec, b32.stepsPerSec)),
    });
  }
  if (b1 && f1) {
    const r = ratio(f1.latencyMs.p50, b1.latencyMs.p50);
    t.push({
      name: "full, 1 in flight: p50 / baseline p50",
      value: r,
      limit: "<= 3",
      met: r <= 3,
    });
  }
  return t;
}

/** What the governed pipeline costs beyond signing every hop: against the signed 4-hop. */
function printVsSigned(cases: readonly CaseResult[]): void {
  out(
    "governed / signed 4-hop at the same number in flight (what Trias adds to signing each hop):",
  );
  for (const c of cases) {
    const v = c.vsSigned;
    if (!v) continue;
    out(
      `  ${pad(c.name, 18, true)}${pad(c.inFlight, 3)}   x p50 ${fmt(v.p50)}   x steps/s ${fmt(v.stepsPerSec)}   x CPU ${fmt(v.cpu)}`,
    );
  }
}

async function policyBench(): Promise<{ rows: PolicyBenchResult[] }> {
  const rows = await benchPolicy();
  out("policy micro-benchmark (decideTier, in this process):");
  for (const r of rows)
    out(
      `  ${pad(r.name, 52, true)} p50 ${fmt(r.p50us, 2)} us  p99 ${fmt(r.p99us, 2)} us  ${r.perSecond.toLocaleString("en")} /s`,
    );
  return { rows };
}

/** NODE_OPTIONS for every agent: --node-options as given, plus CPU profiles with --profile. */
function agentEnv(): Record<string, string> {
  const opts = args["node-options"] ? [args["node-options"]] : [];
  if (args.profile) {
    const dir = resolve(args.profile);
    mkdirSync(dir, { recursive: true });
    opts.push(`--cpu-prof --cpu-prof-dir=${dir}`);
  }
  return opts.length > 0 ? { NODE_OPTIONS: opts.join(" ") } : {};
}

function writeJson(file: string, value: unknown): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, JSON.stringify(value, null, 2) + "\n");
}

async function mainBench(): Promise<number> {
  const rounds = Math.max(1, Number(args.rounds));
  const segMs = Math.max(200, Number(args.seconds) * 1000);
  const levels = args.inflight
    .split(",")
    .map(Number)
    .filter((n) => n > 0);
  const tiers = args.tiers
    .split(",")
    .filter((t): t is Tier => (TIERS as readonly string[]).includes(t));
  const spr = stepsPerRunOption();
  // Each tier in runs of `spr` steps; light also in runs of one step (what a run costs).
  const govCases: GovCase[] = tiers.map((tier) => ({
    key: `${tier}x${spr}`,
    name: spr === 1 ? `governed ${tier} run` : `governed ${tier}`,
    tier,
    stepsPerRun: spr,
  }));
  if (tiers.includes("light") && spr > 1)
    govCases.push({ key: "lightx1", name: "light 1-step run", tier: "light", stepsPerRun: 1 });
  const m = machine();
  out(
    `trias bench: ${m["os"] as string}, ${m["cpus"] as number} x ${m["cpuModel"] as string}, node ${process.version}, ${m["natsServer"] as string}`,
  );
  const t0 = Date.now();
  const gov = await Governed.start({ env: agentEnv() });
  track([...gov.pids.values(), ...gov.serverPids], gov.dir);
  const failures: string[] = [];
  let baseline: Baseline | null = null;
  let signed: Baseline | null = null;
  let traceMessages = 0;
  try {
    const admin = gov.stack.natsCredentials("admin");
    baseline = await Baseline.start(gov.stack.natsUrl, admin);
    track(baseline.pids.values());
    signed = await Baseline.start(gov.stack.natsUrl, admin, { signed: true });
    track(signed.pids.values());
    const serverPid = gov.serverPids[0] ?? -1;
    const extra = new Map([
      ["nats-server", serverPid],
      ["driver", process.pid],
    ]);
    out(
      `started nats-server (file storage), ${gov.pids.size} agents, ${baseline.pids.size} baseline hops and ${signed.pids.size} signed hops in ${Date.now() - t0} ms`,
    );

    // Warm-up: JIT, connections, consumers, page cache. Not measured. The agents' code needs
    // a few thousand messages before V8 has optimised it (throughput still doubled over the
    // first 20 s of light steps with a 1 s warm-up), so most of it is at 32 in flight.
    const w0 = Date.now();
    for (const n of [32, 1]) {
      failures.push(...(await baseline.segment(n, n === 1 ? 500 : 1500, false)).failures);
      failures.push(...(await signed.segment(n, n === 1 ? 500 : 1500, false)).failures);
      for (const c of govCases) {
        const ms = n === 1 ? 500 : c.key === govCases[0]?.key ? 4000 : 1500;
        failures.push(...(await gov.segment(c.tier, n, ms, c.stepsPerRun, false)).failures);
      }
    }
    out(`warm-up done in ${Date.now() - w0} ms; ${rounds} round(s) of ${segMs} ms per case`);

    const acc = new Map<string, Accumulator>();
    const get = (k: string) => {
      let a = acc.get(k);
      if (!a) acc.set(k, (a = new Accumulator()));
      return a;
    };
    for (let r = 0; r < rounds; r++) {
      const rs = Date.now();
      for (const n of levels) {
        const b = await baseline.segment(n, segMs, true, extra);
        get(`baseline/${n}`).add(b);
        failures.push(...b.failures);
        if (verbose)
          out(`  baseline ${n}: ${b.steps} steps, trace read in ${b.readMs.toFixed(0)} ms`);
        const sb = await signed.segment(n, segMs, true, extra);
        get(`signed/${n}`).add(sb);
        failures.push(...sb.failures);
        for (const c of govCases) {
          const g = await gov.segment(c.tier, n, segMs, c.stepsPerRun, true, extra);
          get(`${c.key}/${n}`).add(g);
          failures.push(...g.failures);
          if (verbose)
            out(`  ${c.name} ${n}: ${g.steps} steps, trace read in ${g.readMs.toFixed(0)} ms`);
        }
      }
      out(`round ${r + 1}/${rounds} done in ${Date.now() - rs} ms`);
    }

    traceMessages = await gov.lastSeq();
    out(
      `trace stream at the end: ${traceMessages} messages (the governed runs' signed trace, file storage)`,
    );
    const hopNames = [...baseline.pids.keys()];
    const signedNames = [...signed.pids.keys()];
    const agentNames = [...gov.pids.keys()];
    const cases: CaseResult[] = [];
    for (const n of levels) {
      const b = get(`baseline/${n}`).result(
        "baseline 4-hop",
        "baseline",
        null,
        null,
        n,
        hopNames,
        HOP_PHASES,
      );
      cases.push(b);
      const sb = get(`signed/${n}`).result(
        "signed 4-hop",
        "signed",
        null,
        null,
        n,
        signedNames,
        HOP_PHASES,
      );
      sb.vsBaseline = against(sb, b);
      cases.push(sb);
      for (const c of govCases) {
        const g = get(`${c.key}/${n}`).result(
          c.name,
          "governed",
          c.tier,
          c.stepsPerRun,
          n,
          agentNames,
          PHASES,
        );
        g.vsBaseline = against(g, b);
        const { p50, stepsPerSec, cpu } = against(g, sb);
        g.vsSigned = { p50, stepsPerSec, cpu };
        cases.push(g);
      }
    }

    out();
    printCases(cases);
    out(
      "(x = against the baseline at the same number in flight; CPU = sum over the pipeline's processes)",
    );
    out();
    printVsSigned(cases);
    out();
    printPhases(cases);
    out();
    printCpu(cases);
    out();
    const tg = targets(cases, spr);
    out("targets:");
    for (const t of tg)
      out(
        `  ${t.met ? "met " : "MISS"}  ${pad(t.name, 44, true)} ${fmt(t.value)} (${t.limit})${t.signedFloor !== undefined ? `   signed 4-hop: ${fmt(t.signedFloor)}` : ""}`,
      );
    out();

    await baseline.stop();
    baseline = null;
    await signed.stop();
    signed = null;
    await gov.stop();

    const pol = args["no-policy"] ? { skipped: "--no-policy" } : await policyBench();
    out();
    const rec = await benchRecovery();
    out(
      `recovery cost (${rec.name}, ${rec.runs} runs, ${rec.compensations} compensations): failed verification -> rolled back p50 ${fmt(rec.totalMs.p50)} ms  p99 ${fmt(rec.totalMs.p99)} ms; per compensation (order -> verified) p50 ${fmt(rec.perCompensationMs.p50)} ms`,
    );
    const mcp = await mcpBench();
    const coldPaths = await coldPathBench();
    const file = args.out ? resolve(args.out) : join(REPO_ROOT, "bench", "results", "latest.json");
    writeJson(file, {
      mcp,
      coldPaths,
      when: new Date().toISOString(),
      command: `pnpm bench ${process.argv.slice(2).join(" ")}`.trim(),
      machine: m,
      settings: {
        rounds,
        segmentMs: segMs,
        inFlight: levels,
        tiers,
        stepsPerRun: spr,
        warmup: true,
        storage: "file",
        agentEnv: agentEnv(),
      },
      traceMessages,
      cases,
      targets: tg,
      policy: pol,
      recovery: rec,
      failures: failures.slice(0, 50),
      durationMs: Date.now() - t0,
    });
    out(`\nwrote ${file} (${round((Date.now() - t0) / 1000, 1)} s in all)`);
  } finally {
    await baseline?.stop().catch(() => undefined);
    await signed?.stop().catch(() => undefined);
    await stopGoverned(gov, failures);
  }
  return exitCode(failures);
}

async function mcpBench(): Promise<McpBenchResult> {
  const r = await benchMcp();
  out(
    `MCP tool call (${r.name}, ${r.calls} calls one at a time): governed p50 ${fmt(r.governedMs.p50)} ms  p99 ${fmt(r.governedMs.p99)} ms; direct p50 ${fmt(r.directMs.p50)} ms  p99 ${fmt(r.directMs.p99)} ms`,
  );
  return r;
}

async function coldPathBench(): Promise<ColdPathResult> {
  out(
    "cold paths (`trias pending`, `trias audit <run>` of an old run; before -> after the indexed reads):",
  );
  const r = await benchColdPaths();
  for (const l of coldPathLines(r)) out(l);
  return r;
}

async function coldPathOnly(): Promise<number> {
  const t0 = Date.now();
  const r = await coldPathBench();
  const file = args.out ? resolve(args.out) : join(REPO_ROOT, "bench", "results", "coldpath.json");
  writeJson(file, {
    when: new Date().toISOString(),
    command: `pnpm bench ${process.argv.slice(2).join(" ")}`.trim(),
    machine: machine(),
    coldPaths: r,
    durationMs: Date.now() - t0,
  });
  out(`\nwrote ${file}`);
  return 0;
}

async function memoryBench(): Promise<number> {
  const total = Math.max(5, Number(args.steps ?? 100_000));
  const samples = 5;
  const chunk = Math.ceil(total / samples);
  const inFlight = Number(args.inflight.split(",").at(-1) ?? 32) || 32;
  const limitMb = 150;
  const spr = stepsPerRunOption();
  const m = machine();
  out(
    `trias bench --memory: ${total} light steps (runs of ${spr}) at ${inFlight} in flight, RSS of each agent after each ${chunk}`,
  );
  const gov = await Governed.start({ env: agentEnv() });
  track([...gov.pids.values(), ...gov.serverPids], gov.dir);
  const failures: string[] = [];
  const rows: {
    afterSteps: number;
    elapsedS: number;
    stepsPerSec: number;
    rssMb: Record<string, number>;
  }[] = [];
  const t0 = Date.now();
  try {
    const pids = new Map([...gov.pids, ["nats-server", gov.serverPids[0] ?? -1]]);
    const sample = () =>
      Object.fromEntries(
        [...pids].map(([k, pid]) => [k, round((rssBytes(pid) ?? Number.NaN) / 2 ** 20, 1)]),
      );
    out(
      `  ${pad("steps", 8)}${pad("steps/s", 9)}  ${[...pids.keys()].map((k) => pad(k, 12)).join("")}   (RSS MB)`,
    );
    const start = sample();
    out(
      `  ${pad(0, 8)}${pad("", 9)}  ${[...pids.keys()].map((k) => pad(fmt(start[k] ?? NaN, 1), 12)).join("")}`,
    );
    let done = 0;
    for (let i = 1; i <= samples; i++) {
      const r = await gov.drive("light", inFlight, spr, { maxSteps: chunk });
      failures.push(...r.failures);
      done += r.steps;
      const s = sample();
      const rate = round((r.steps * 1000) / Math.max(1, r.wallMs), 1);
      rows.push({
        afterSteps: done,
        elapsedS: round((Date.now() - t0) / 1000, 1),
        stepsPerSec: rate,
        rssMb: s,
      });
      out(
        `  ${pad(done, 8)}${pad(fmt(rate, 0), 9)}  ${[...pids.keys()].map((k) => pad(fmt(s[k] ?? NaN, 1), 12)).join("")}`,
      );
      if (r.failures.length > 0) break;
    }
    const second = rows[1]?.rssMb ?? {};
    const last = rows.at(-1)?.rssMb ?? {};
    const verdicts = [...gov.pids.keys()].map((k) => {
      const a = second[k] ?? Number.NaN;
      const b = last[k] ?? Number.NaN;
      const growth = round(b - a, 1);
      // RSS moves with the GC's heap sizing: a few MB either way is not growth.
      const flat = growth <= Math.max(5, a * 0.05);
      return {
        agent: k,
        rssMbAtSecond: a,
        rssMbAtLast: b,
        growthMb: growth,
        underLimit: b < limitMb,
        flat,
      };
    });
    out();
    out(
      `growth between sample 2 and sample ${rows.length} (target: each agent < ${limitMb} MB, no growth):`,
    );
    for (const v of verdicts)
      out(
        `  ${v.underLimit && v.flat ? "met " : "MISS"}  ${pad(v.agent, 12, true)} ${fmt(v.rssMbAtSecond, 1)} -> ${fmt(v.rssMbAtLast, 1)} MB (${v.growthMb >= 0 ? "+" : ""}${fmt(v.growthMb, 1)})`,
      );
    const file = args.out ? resolve(args.out) : join(REPO_ROOT, "bench", "results", "memory.json");
    writeJson(file, {
      when: new Date().toISOString(),
      command: `pnpm bench ${process.argv.slice(2).join(" ")}`.trim(),
      machine: m,
      steps: total,
      stepsPerRun: spr,
      inFlight,
      agentEnv: agentEnv(),
      limitMb,
      start,
      samples: rows,
      verdicts,
      failures: failures.slice(0, 50),
    });
    out(`\nwrote ${file}`);
  } finally {
    await stopGoverned(gov, failures);
  }
  return exitCode(failures);
}

/** Light steps on one deployment against another (figures, no target). */
async function deploymentBench(which: "replicas" | "cluster"): Promise<number> {
  const m = machine();
  out(
    `trias bench --${which}: ${m["os"] as string}, ${m["cpus"] as number} x ${m["cpuModel"] as string}, node ${process.version}, ${m["natsServer"] as string}`,
  );
  const rows = await benchVariants(DEPLOYMENTS[which], {
    rounds: Math.max(1, Number(args.rounds)),
    segMs: Math.max(200, Number(args.seconds) * 1000),
    levels: args.inflight
      .split(",")
      .map(Number)
      .filter((n) => n > 0),
    stepsPerRun: stepsPerRunOption(),
    env: { ...agentEnv(), LOG_LEVEL: "warn" },
    started: (gov) => track([...gov.pids.values(), ...gov.serverPids], gov.dir),
  });
  out(
    `${pad("deployment", 16, true)}${pad("in flight", 10)}${pad("steps", 8)}${pad("steps/s", 10)}${pad("p50 ms", 9)}${pad("p99 ms", 9)}${pad("CPU ms/step", 13)}${pad("x steps/s", 11)}${pad("x p50", 8)}`,
  );
  for (const r of rows) {
    const ref = DEPLOYMENTS[which][0]![0];
    const one = rows.find((o) => o.variant === ref && o.inFlight === r.inFlight);
    out(
      `${pad(r.variant, 16, true)}${pad(r.inFlight, 10)}${pad(r.steps, 8)}${pad(fmt(r.stepsPerSec, 0), 10)}${pad(fmt(r.latencyMs.p50), 9)}${pad(fmt(r.latencyMs.p99), 9)}${pad(fmt(r.cpuPerStepMs), 13)}${pad(one ? fmt(ratio(r.stepsPerSec, one.stepsPerSec)) : "", 11)}${pad(one ? fmt(ratio(r.latencyMs.p50, one.latencyMs.p50)) : "", 8)}`,
    );
  }
  const file = args.out ? resolve(args.out) : join(REPO_ROOT, "bench", "results", `${which}.json`);
  writeJson(file, {
    when: new Date().toISOString(),
    command: `pnpm bench ${process.argv.slice(2).join(" ")}`.trim(),
    machine: m,
    rows,
  });
  out(`\nwrote ${file}`);
  return exitCode(rows.flatMap((r) => r.failures));
}

/** Stop the stack; keep its keys and logs when asked or when a step failed. */
async function stopGoverned(gov: Governed, failures: readonly string[]): Promise<void> {
  await gov.stop().catch(() => undefined);
  if (!args.keep && failures.length === 0) rmSync(gov.dir, { recursive: true, force: true });
  else out(`kept keys and agent logs in ${gov.dir}`);
}

/** Non-zero only when a step failed, never for a slow figure. */
function exitCode(failures: readonly string[]): number {
  if (failures.length === 0) return 0;
  out(`\n${failures.length} step(s) failed; first: ${failures[0]}`);
  return 1;
}

try {
  process.exitCode = args.memory
    ? await memoryBench()
    : args.mcp
      ? await mcpBench().then(() => 0)
      : args.coldpath
        ? await coldPathOnly()
        : args.replicas || args.cluster
          ? await deploymentBench(args.replicas ? "replicas" : "cluster")
          : await mainBench();
} catch (e) {
  process.stderr.write(`trias bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exitCode = 1;
}
