/**
 * Summarise V8 CPU profiles (`node --cpu-prof`, as `pnpm bench --profile DIR` writes for
 * every agent): busy time, then the top functions by self time and by inclusive time, and
 * self time by package. Usage: node bench/dist/profile-summary.js DIR|FILE... [--top N] [--skip-ms MS | --last-ms MS] [--callers FUNCTION]
 */
import { readFileSync, readdirSync, statSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    top: { type: "string", default: "25" },
    "skip-ms": { type: "string", default: "0" },
    "last-ms": { type: "string" },
    callers: { type: "string" },
    depth: { type: "string", default: "6" },
  },
});
const top = Number(values.top);
// Leave out the first part of each profile (module loading, connecting, warm-up).
const skipUs = Number(values["skip-ms"]) * 1000;

function files(p: string): string[] {
  if (statSync(p).isDirectory())
    return readdirSync(p)
      .filter((f) => f.endsWith(".cpuprofile"))
      .map((f) => join(p, f));
  return [p];
}

function where(cf: CallFrame): string {
  const url = cf.url.replace(/^file:\/\//, "");
  const nm = url.lastIndexOf("node_modules/");
  let short = url;
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    short = rest[0]?.startsWith("@")
      ? `${rest[0]}/${rest[1]}/${rest.at(-1)}`
      : `${rest[0]}/${rest.at(-1)}`;
  } else if (url.includes("/work/")) {
    short = url.split("/").slice(-3).join("/");
  }
  return `${cf.functionName || "(anonymous)"} ${short ? `${short}:${cf.lineNumber + 1}` : ""}`.trim();
}

function pkgOf(cf: CallFrame): string {
  const url = cf.url;
  if (!url) return cf.functionName.startsWith("(") ? cf.functionName : "(native)";
  if (url.startsWith("node:")) return "node:" + url.slice(5).split("/")[0];
  const nm = url.lastIndexOf("node_modules/");
  if (nm >= 0) {
    const rest = url.slice(nm + "node_modules/".length).split("/");
    const name = rest[0]?.startsWith("@") ? `${rest[0]}/${rest[1]}` : (rest[0] ?? "?");
    return name.startsWith("@trias/") ? `${name} (linked)` : name;
  }
  const m = /\/(shared|agents|bench)\/([^/]+)\//.exec(url);
  return m ? `${m[1]}/${m[2]}` : url;
}

function summarise(file: string): void {
  const p = JSON.parse(readFileSync(file, "utf8")) as Profile;
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parent = new Map<number, number>();
  for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const self = new Map<number, number>();
  let t = 0;
  const totalUs = p.timeDeltas.reduce((a, b) => a + b, 0);
  // --last-ms: only the end of the profile (the measured interval before the stop).
  const fromUs =
    values["last-ms"] !== undefined ? totalUs - Number(values["last-ms"]) * 1000 : skipUs;
  for (let i = 0; i < p.samples.length; i++) {
    const id = p.samples[i]!;
    t += p.timeDeltas[i] ?? 0;
    if (t < fromUs) continue;
    self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0));
  }
  const total = [...self.values()].reduce((a, b) => a + b, 0);
  let idle = 0;
  const selfByFn = new Map<string, number>();
  const selfByPkg = new Map<string, number>();
  const inclByFn = new Map<string, number>();
  for (const [id, us] of self) {
    const n = byId.get(id)!;
    const name = n.callFrame.functionName;
    if (name === "(idle)") {
      idle += us;
      continue;
    }
    const k = where(n.callFrame);
    selfByFn.set(k, (selfByFn.get(k) ?? 0) + us);
    const pk = pkgOf(n.callFrame);
    selfByPkg.set(pk, (selfByPkg.get(pk) ?? 0) + us);
    // Inclusive: count this sample once for every distinct frame on its stack.
    const seen = new Set<string>();
    for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
      const f = where(byId.get(cur)!.callFrame);
      if (seen.has(f)) continue;
      seen.add(f);
      inclByFn.set(f, (inclByFn.get(f) ?? 0) + us);
    }
  }
  const busy = total - idle;
  // --callers NAME: where the time under a function comes from (--depth frames, 6 by default).
  const callersOf = values.callers;
  const byPath = new Map<string, number>();
  if (callersOf) {
    for (const [id, us] of self) {
      const stack: string[] = [];
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur))
        stack.push(where(byId.get(cur)!.callFrame));
      const at = stack.findIndex((f) => f.startsWith(callersOf + " "));
      if (at < 0) continue;
      const path = stack
        .slice(at, at + Number(values.depth))
        .map((f) => f.split(" ")[0])
        .join(" < ");
      byPath.set(path, (byPath.get(path) ?? 0) + us);
    }
  }
  const pct = (us: number) => `${((100 * us) / Math.max(1, busy)).toFixed(1).padStart(5)}%`;
  const ms = (us: number) => `${(us / 1000).toFixed(0).padStart(6)} ms`;
  process.stdout.write(
    `\n== ${basename(file)}: ${(total / 1000).toFixed(0)} ms sampled, busy ${(busy / 1000).toFixed(0)} ms (${((100 * busy) / Math.max(1, total)).toFixed(1)}%)\n`,
  );
  if (callersOf) {
    process.stdout.write(`-- time under ${callersOf}, by caller path\n`);
    for (const [k, v] of [...byPath].sort((a, b) => b[1] - a[1]).slice(0, top))
      process.stdout.write(
        `  ${((100 * v) / Math.max(1, busy)).toFixed(1).padStart(5)}% ${(v / 1000).toFixed(0).padStart(6)} ms  ${k}\n`,
      );
    return;
  }
  process.stdout.write("-- self time by package (% of busy)\n");
  for (const [k, v] of [...selfByPkg].sort((a, b) => b[1] - a[1]).slice(0, 15))
    process.stdout.write(`  ${pct(v)} ${ms(v)}  ${k}\n`);
  process.stdout.write("-- top self time\n");
  for (const [k, v] of [...selfByFn].sort((a, b) => b[1] - a[1]).slice(0, top))
    process.stdout.write(`  ${pct(v)} ${ms(v)}  ${k}\n`);
  process.stdout.write("-- top inclusive time\n");
  for (const [k, v] of [...inclByFn]
    .filter(([k]) => !k.startsWith("(root)") && !k.startsWith("(program)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, top))
    process.stdout.write(`  ${pct(v)} ${ms(v)}  ${k}\n`);
}

for (const p of positionals) for (const f of files(p)) summarise(f);
