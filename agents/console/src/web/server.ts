import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { readdirSync, unwatchFile, watchFile } from "node:fs";
import { join } from "node:path";
import type { Bus, StoredMessage, Subscription } from "@trias/bus";
import {
  encode,
  encodeFrame,
  isArgsRef,
  isTriasError,
  parseMessage,
  type Message,
  type MessageOf,
} from "@trias/protocol";
import {
  loadPolicy,
  renderPolicyDiff,
  diffPolicies,
  summarizePolicy,
  SHIPPED_POLICY_DIR,
  type LoadedPolicy,
} from "@trias/policy";
import { readJwks, type KeyRegistry, type Jwks } from "@trias/signing";
import { auditEvents, readRun } from "../audit.js";
import { fullReadNote } from "../cli-kit.js";
import {
  checkHumanDecision,
  humanVerdictEnvelope,
  prepareHumanOrder,
  publishHumanOrder,
  recheckHumanOrder,
  publishHumanVerdict,
  stepArguments,
  waiting,
  waitingStep,
  type WaitingStep,
} from "../human.js";
import { HUMAN_ACTIONS, type HumanAction } from "../resolve.js";
import { CLIENT_JS } from "./client.js";
import { needs, RunIndex, type RunRow } from "../runs.js";
import { esc, layout, outcomeClass, time } from "./html.js";

export interface ConsoleServerOptions {
  bus: Bus;
  registry: KeyRegistry;
  /** The registry file: reloaded when it changes (a person registered or a key revoked). */
  registryFile: string;
  /** Port on 127.0.0.1; 0 picks a free one. @default 0 */
  port?: number;
  /** Policy files shown under Policies and used for deadlines. @default the shipped ones */
  policyDir?: string;
}

/**
 * How long a prepared (unsigned) human verdict waits for its signature.
 * @default 600000, the verdict's own time to live
 */
const PREPARED_TTL_MS = 10 * 60_000;

/**
 * The web console: runs (live), a run's every step, approvals signed in the browser,
 * policies, keys. Its index is built from one JetStream consumer that starts at the
 * stream's first message and then follows; a page never scans the stream, a run page
 * reads only that run's subjects.
 */
export class ConsoleServer {
  readonly #o: ConsoleServerOptions;
  readonly #runs: RunIndex;
  readonly #clients = new Set<ServerResponse>();
  /** Envelopes prepared for a person's browser to sign: a verdict, or an order about a run. */
  readonly #prepared = new Map<
    string,
    {
      message: MessageOf<"verdict"> | MessageOf<"recovery_decided">;
      payload: Uint8Array;
      at: number;
      /** For an order: what the person asked, to check again when the signature comes. */
      action?: HumanAction;
      reason?: string;
    }
  >();
  #jwks: Jwks;
  #server: Server | null = null;
  #sub: Subscription | null = null;
  #policies: LoadedPolicy[] = [];
  url = "";

  constructor(o: ConsoleServerOptions) {
    this.#o = o;
    this.#runs = new RunIndex(o.registry);
    this.#jwks = readJwks(o.registryFile);
  }

  async start(): Promise<string> {
    const dir = this.#o.policyDir ?? SHIPPED_POLICY_DIR;
    this.#policies = readdirSync(dir)
      .filter((f) => f.endsWith(".yaml"))
      .sort()
      .map((f) => loadPolicy(join(dir, f)));
    watchFile(this.#o.registryFile, { interval: 500, persistent: false }, () => {
      try {
        this.#jwks = readJwks(this.#o.registryFile);
        this.#o.registry.replaceKeys(this.#jwks);
      } catch {
        // A registry being written: the next change event reads it whole.
      }
    });
    this.#sub = await this.#o.bus.watch("trias.>", (m) => this.#index(m), { fromSeq: 1 });
    this.#server = createServer((req, res) => {
      this.#route(req, res).catch((e: unknown) => this.#fail(res, e));
    });
    await new Promise<void>((r) => this.#server!.listen(this.#o.port ?? 0, "127.0.0.1", r));
    const addr = this.#server.address();
    this.url = `http://127.0.0.1:${typeof addr === "object" && addr ? addr.port : 0}`;
    return this.url;
  }

  async stop(): Promise<void> {
    unwatchFile(this.#o.registryFile);
    for (const c of this.#clients) c.end();
    this.#clients.clear();
    await this.#sub?.stop();
    await new Promise<void>((r) => (this.#server ? this.#server.close(() => r()) : r()));
    this.#server?.closeAllConnections();
  }

  #index(raw: StoredMessage): void {
    const m = this.#runs.add(raw);
    if (!m) return;
    const data = JSON.stringify({ run: m.run, kind: m.kind, seq: raw.seq });
    for (const c of this.#clients) c.write(`data: ${data}\n\n`);
  }

  pending(): WaitingStep[] {
    return this.#runs.pending();
  }

  #why(r: RunRow, pending?: WaitingStep[]): string {
    return this.#runs.why(r, pending);
  }

  #needs(w: WaitingStep): string {
    return needs(w);
  }

  #deadline(w: WaitingStep): number | null {
    const p = this.#policies.find((x) => x.doc.environment === w.environment);
    const t = p?.doc.tiers[w.tier as "light" | "standard" | "full"];
    return t ? w.routedAt + t.humanTimeoutMs : null;
  }

  async #route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://localhost");
    const path = url.pathname;
    if (req.method === "GET" && path === "/app.js")
      return this.#send(res, 200, CLIENT_JS, "text/javascript; charset=utf-8");
    if (req.method === "GET" && path === "/api/events") return this.#events(req, res);
    if (req.method === "GET" && path === "/api/whoami") return this.#whoami(url, res);
    if (req.method === "POST" && path === "/api/prepare") return this.#prepare(req, res);
    if (req.method === "POST" && path === "/api/prepare-order") return this.#prepareOrder(req, res);
    if (req.method === "POST" && path === "/api/decide") return this.#decide(req, res);
    if (req.method === "GET" && path === "/") return this.#html(res, this.#runsPage(url));
    const argsPath = /^\/runs\/([^/]+)\/steps\/(\d+)\/args$/.exec(path);
    if (req.method === "GET" && argsPath)
      return this.#stepArgs(decodeURIComponent(argsPath[1]!), Number(argsPath[2]), res);
    if (req.method === "GET" && path.startsWith("/runs/"))
      return this.#runPage(decodeURIComponent(path.slice("/runs/".length)), res);
    if (req.method === "GET" && path === "/approvals")
      return this.#html(res, this.#approvalsPage());
    if (req.method === "GET" && path === "/policies") return this.#html(res, this.#policiesPage());
    if (req.method === "GET" && path === "/keys") return this.#html(res, this.#keysPage());
    if (req.method === "GET" && path === "/identity") return this.#html(res, this.#identityPage());
    return this.#send(res, 404, layout("Not found", `<p>no page ${esc(path)}</p>`), "text/html");
  }

  #send(res: ServerResponse, code: number, body: string, type: string): void {
    res.writeHead(code, { "content-type": type, "cache-control": "no-store" });
    res.end(body);
  }

  #html(res: ServerResponse, body: string): void {
    this.#send(res, 200, body, "text/html; charset=utf-8");
  }

  #json(res: ServerResponse, code: number, v: unknown): void {
    this.#send(res, code, JSON.stringify(v), "application/json");
  }

  #fail(res: ServerResponse, e: unknown): void {
    const message = isTriasError(e)
      ? `${e.code}: ${e.message}`
      : String((e as Error)?.message ?? e);
    if (!res.headersSent) this.#json(res, isTriasError(e) ? 400 : 500, { error: message });
    else res.end();
  }

  #events(req: IncomingMessage, res: ServerResponse): void {
    res.writeHead(200, {
      "content-type": "text/event-stream",
      "cache-control": "no-store",
      connection: "keep-alive",
    });
    res.write(": live\n\n");
    this.#clients.add(res);
    req.on("close", () => this.#clients.delete(res));
  }

  #whoami(url: URL, res: ServerResponse): void {
    const x = url.searchParams.get("x") ?? "";
    const k = this.#jwks.keys.find((e) => e.x === x && e.status === "active" && e.role === "human");
    this.#json(res, 200, k ? { kid: k.kid, name: k.name, groups: k.groups ?? [] } : {});
  }

  async #body(req: IncomingMessage): Promise<Record<string, unknown>> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    return JSON.parse(Buffer.concat(chunks).toString("utf8") || "{}") as Record<string, unknown>;
  }

  /** The exact bytes a human's browser signs: the verdict envelope, encoded once, kept here. */
  async #prepare(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const b = await this.#body(req);
    const run = String(b["run"]);
    const step = Number(b["step"]);
    const decision = b["decision"] === "reject" ? "reject" : "approve";
    const reason = typeof b["reason"] === "string" ? b["reason"].trim() : "";
    const judge = this.#o.registry.get(String(b["kid"]));
    if (!judge || judge.status !== "active")
      return this.#json(res, 403, { error: "this key is not registered (see Identity)" });
    if (decision === "reject" && !reason)
      return this.#json(res, 400, { error: "a rejection needs a reason" });
    try {
      const w = await waitingStep(this.#o.bus, this.#o.registry, run, step);
      checkHumanDecision(w, judge, decision);
      const message = parseMessage(
        humanVerdictEnvelope(w, judge, decision, reason || `approved by ${judge.name}`),
      ) as MessageOf<"verdict">;
      this.#keep(message);
      this.#json(res, 200, {
        id: message.id,
        payload: Buffer.from(this.#prepared.get(message.id)!.payload).toString("base64"),
      });
    } catch (e) {
      this.#json(res, 403, { error: isTriasError(e) ? `${e.code}: ${e.message}` : String(e) });
    }
  }

  /**
   * The exact bytes of a person's order about a run (cancel; retry, rollback, abandon or
   * resolved for an escalated run), as `trias cancel`/`trias resolve` would sign them.
   */
  async #prepareOrder(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const b = await this.#body(req);
    const run = String(b["run"]);
    const action = String(b["action"]) as HumanAction;
    const reason = typeof b["reason"] === "string" ? b["reason"].trim() : "";
    const person = this.#o.registry.get(String(b["kid"]));
    if (!person || person.status !== "active" || person.role !== "human")
      return this.#json(res, 403, {
        error: "this key is not a registered person's (see Identity)",
      });
    if (!HUMAN_ACTIONS.includes(action))
      return this.#json(res, 400, { error: `no such action: ${action}` });
    if (!reason) return this.#json(res, 400, { error: `a ${action} needs a reason` });
    try {
      const message = parseMessage(
        await prepareHumanOrder(this.#o.bus, this.#o.registry, person, run, action, reason),
      ) as MessageOf<"recovery_decided">;
      this.#keep(message, { action, reason });
      this.#json(res, 200, {
        id: message.id,
        payload: Buffer.from(this.#prepared.get(message.id)!.payload).toString("base64"),
      });
    } catch (e) {
      // A refusal says why in words (no such run, not escalated, closed already).
      this.#json(res, 403, { error: e instanceof Error ? e.message : String(e) });
    }
  }

  /** Keep a prepared envelope, encoded once, until its signature comes (or it expires). */
  #keep(
    message: MessageOf<"verdict"> | MessageOf<"recovery_decided">,
    order?: { action: HumanAction; reason: string },
  ): void {
    const now = Date.now();
    for (const [id, p] of this.#prepared)
      if (now - p.at > PREPARED_TTL_MS) this.#prepared.delete(id);
    this.#prepared.set(message.id, {
      message,
      payload: encode(message),
      at: now,
      ...order,
    });
  }

  /** A signature from the browser: the frame is checked against the registered key, then published. */
  async #decide(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const b = await this.#body(req);
    const p = this.#prepared.get(String(b["id"]));
    if (!p) return this.#json(res, 404, { error: "nothing prepared under this id (expired?)" });
    this.#prepared.delete(String(b["id"]));
    try {
      const sig = Buffer.from(String(b["sig"]), "base64");
      const frame = encodeFrame({ kid: p.message.sender, sig, payload: p.payload });
      const opened = this.#o.registry.open(frame);
      if (p.message.kind === "recovery_decided") {
        // The run may have moved since: the order must still be one the person may give.
        await recheckHumanOrder(
          this.#o.bus,
          this.#o.registry,
          opened.key,
          p.message.run,
          p.action ?? "cancel",
          p.reason ?? "",
        );
        await publishHumanOrder(this.#o.bus, p.message, frame);
        return this.#json(res, 200, {
          message: `${p.message.body.action} ordered for ${p.message.run}, signed by ${opened.key.name}: ${p.message.body.reason}`,
        });
      }
      const w = await waitingStep(
        this.#o.bus,
        this.#o.registry,
        p.message.run,
        p.message.step ?? 0,
      );
      checkHumanDecision(
        w,
        opened.key,
        p.message.body.decision === "reject" ? "reject" : "approve",
      );
      await publishHumanVerdict(this.#o.bus, p.message, frame);
      this.#json(res, 200, {
        message: `${p.message.body.decision === "approve" ? "approved" : "rejected"} step ${w.step} of ${w.run}, signed by ${opened.key.name}`,
      });
    } catch (e) {
      this.#json(res, 403, {
        error: isTriasError(e)
          ? `${e.code}: ${e.message}`
          : e instanceof Error
            ? e.message
            : String(e),
      });
    }
  }

  #runsPage(url: URL): string {
    const status = url.searchParams.get("status");
    const env = url.searchParams.get("env");
    const pending = this.pending();
    const rows = this.#runs
      .rows()
      .filter((r) => r.goal !== "")
      .filter((r) => !status || (status === "open" ? r.outcome === null : r.outcome === status))
      .filter((r) => !env || r.environment === env)
      .sort((a, b) => b.startedAt - a.startedAt)
      .map(
        (
          r,
        ) => `<tr data-run="${esc(r.run)}"><td><a href="/runs/${encodeURIComponent(r.run)}">${esc(r.run)}</a></td>
<td class="${outcomeClass(r.outcome)}">${esc(r.outcome ?? "open")}</td>
<td>${esc(r.environment)}</td><td>${esc(r.tools.join(", "))}</td><td>${esc(r.requestedBy)}</td>
<td>${time(r.startedAt)}</td><td>${esc(this.#why(r, pending))}</td></tr>`,
      )
      .join("");
    return layout(
      "Runs",
      `<p class="small">live; filter with ?status=open|completed|rejected|… and ?env=dev|staging|prod</p>
<table><tr><th>run</th><th>status</th><th>environment</th><th>tools</th><th>requested by</th><th>started</th><th>why (open: what it waits for)</th></tr>${rows}</table>`,
    );
  }

  #decisionForm(w: WaitingStep): string {
    const id = `${w.run}-${w.step}`;
    return `<div class="decide" data-pending="${esc(id)}">
<textarea data-reason="${esc(id)}" rows="1" cols="40" placeholder="reason (needed to reject)"></textarea>
<button data-decision="approve" data-run="${esc(w.run)}" data-step="${w.step}">Approve</button>
<button data-decision="reject" data-run="${esc(w.run)}" data-step="${w.step}">Reject</button></div>`;
  }

  /** What a person may do to an open run: cancel it, or decide it when it is escalated. */
  #orderForm(run: string, escalated: boolean): string {
    const actions: [HumanAction, string][] = escalated
      ? [
          ["retry", "Retry the step"],
          ["rollback", "Roll back"],
          ["abandon", "Abandon"],
          ["resolved", "Mark resolved by hand"],
          ["cancel", "Cancel"],
        ]
      : [["cancel", "Cancel the run"]];
    return `<div class="step order" data-order-run="${esc(run)}"><div class="k">${escalated ? "escalated: a person decides" : "stop this run"}</div>
<textarea data-order-reason="${esc(run)}" rows="1" cols="40" placeholder="reason (recorded in the trace)"></textarea>
${actions.map(([a, label]) => `<button data-order="${a}" data-run="${esc(run)}">${label}</button>`).join("\n")}</div>`;
  }

  #approvalsPage(): string {
    const items = this.pending()
      .map((w) => {
        const deadline = this.#deadline(w);
        return `<div class="step" data-pending-step="${esc(`${w.run}-${w.step}`)}">
<div><a href="/runs/${encodeURIComponent(w.run)}">${esc(w.run)}</a> step ${w.step}: <b>${esc(w.tool)}</b> ${argsView(w.run, w.step, w.args)}</div>
<div>tier <b>${esc(w.tier)}</b> in ${esc(w.environment)}; needs ${esc(this.#needs(w))}</div>
<div>requested by <b class="requester">${esc(w.requestedBy ?? "unknown")}</b>; proposed by ${esc(w.proposer.name)}${deadline ? `; deadline ${time(deadline)} UTC` : ""}</div>
<div class="why">why: <ul>${w.explanation.map((l) => `<li>${esc(l)}</li>`).join("")}</ul></div>
${this.#decisionForm(w)}</div>`;
      })
      .join("");
    return layout("Approvals", items || "<p>nothing waits for a human</p>");
  }

  /**
   * A step's arguments as JSON, read back and checked against their digest when they travel by
   * reference (what a person approves; `trias args` prints the same).
   */
  async #stepArgs(run: string, step: number, res: ServerResponse): Promise<void> {
    const found = await stepArguments(this.#o.bus, this.#o.registry, run, step);
    if (!found)
      return this.#json(res, 404, { error: `run ${run} has no proposal for step ${step}` });
    this.#json(res, 200, found.args);
  }

  async #runPage(run: string, res: ServerResponse): Promise<void> {
    const events = await readRun(this.#o.bus, run, fullReadNote(run));
    if (events.length === 0)
      return this.#send(
        res,
        404,
        layout("No such run", `<p>no such run: ${esc(run)}</p>`),
        "text/html",
      );
    const reg = this.#o.registry;
    const report = auditEvents(reg, run, events);
    const opened = events.flatMap((e) => {
      try {
        return [{ seq: e.seq, ...reg.open(e.data) }];
      } catch {
        return [];
      }
    });
    const traceId = opened.find((o) => o.message.trace)?.message.trace?.traceparent.split("-")[1];
    const bySteps = new Map<string, string[]>();
    for (const o of opened) {
      const k = o.message.step === null ? "run" : `step ${o.message.step}`;
      const list = bySteps.get(k) ?? [];
      list.push(
        `<div class="msg" data-kind="${o.message.kind}"><span class="small">#${o.seq} ${esc(o.key.name)}</span> ${this.#detail(o.message)}</div>`,
      );
      bySteps.set(k, list);
    }
    const pending = [...waiting(reg, events).values()];
    const row = this.#runs.get(run);
    const body = `<p>status <b class="run-status">${esc(report.outcome ?? "open")}</b>${row ? ` — ${esc(this.#why(row, pending))}` : ""}</p>
<p>trace id <code class="trace-id">${esc(traceId ?? "none (tracing off)")}</code></p>
<p class="audit ${report.ok ? "ok" : "bad"}">${report.ok ? "audit: OK, every signature and every receipt link verifies" : `audit: FAILED ${esc(report.firstBad?.reason ?? report.problems[0] ?? "")}`} (${report.verified} signatures, receipt ${esc(report.claimed?.head ?? "none")})</p>
${pending.map((w) => `<div class="step">step ${w.step} waits for a human (${esc(this.#needs(w))})${this.#decisionForm(w)}</div>`).join("")}
${report.outcome === null && row ? this.#orderForm(run, row.escalated !== null) : ""}
${[...bySteps].map(([k, l]) => `<div class="step"><div class="k">${esc(k)}</div>${l.join("")}</div>`).join("")}`;
    this.#html(res, layout(`Run ${run}`, body));
  }

  /** Everything a person needs to judge one message, per kind. */
  #detail(m: Message): string {
    switch (m.kind) {
      case "task_submitted":
        return `<span class="k">task</span> ${esc(m.body.goal)} (${esc(m.body.program)} ${esc(m.body.input)}), requested by ${esc(m.body.requestedBy)}`;
      case "step_proposed":
        return `<span class="k">proposal</span> ${esc(m.body.tool)} ${argsView(m.run, m.step ?? 0, m.body.args)} — ${esc(m.body.rationale)}`;
      case "tier_assigned":
        return `<span class="k">tier ${esc(m.body.tier)}</span> score ${m.body.score} (${esc(m.body.environment)}, policy ${esc(m.body.policyDigest.slice(0, 12))})${m.body.denied ? ` <b class="bad">denied: ${esc(m.body.denied)}</b>` : ""}<ul>${m.body.explanation.map((l) => `<li>${esc(l)}</li>`).join("")}</ul>`;
      case "verdict":
        return `<span class="k">verdict</span> <b class="${m.body.decision === "approve" ? "ok" : "bad"}">${esc(m.body.decision)}</b> (${esc(m.body.strategy)}): ${esc(m.body.reasons.join("; "))}`;
      case "step_executed":
        return `<span class="k">execution</span> ${esc(m.body.tool)} <b class="${m.body.outcome === "ok" ? "ok" : "bad"}">${esc(m.body.outcome)}</b> ${esc(m.body.result)}${m.body.error ? ` ${esc(m.body.error)}` : ""}; approvals ${esc(m.body.approvals.map((k) => this.#o.registry.get(k)?.name ?? k).join(", ") || "none")}`;
      case "step_verified":
        return `<span class="k">verification</span> <b>${esc(m.body.verdict)}</b><ul>${m.body.checks.map((c) => `<li class="${c.ok ? "ok" : "bad"}">${esc(c.name)}: ${esc(c.detail)}</li>`).join("")}</ul>`;
      case "recovery_decided":
        return `<span class="k">recovery</span> ${esc(m.body.action)}: ${esc(m.body.reason)}`;
      case "run_closed": {
        const t = m.body.topology;
        return `<span class="k">closed</span> <b class="${outcomeClass(m.body.outcome)}">${esc(m.body.outcome)}</b>: ${esc(m.body.reason)}; receipt ${esc(m.body.receipt.head)} over ${m.body.receipt.events} events${t ? `; topology entropy ${t.entropyBits.toFixed(2)} bits, rollback density ${t.rollbackDensity.toFixed(2)}, path variance ${t.pathVariance.toFixed(2)}${t.alarm ? ` <b class="bad">alarm: ${esc(t.reasons.join("; "))}</b>` : ""}` : ""}`;
      }
      case "message_rejected":
        return `<span class="k bad">refused</span> by ${esc(m.body.by)}: ${esc(m.body.code)}: ${esc(m.body.reason)}`;
      case "step_held":
        return `<span class="k">held</span> until ${esc(new Date(m.body.until).toISOString())}: ${esc(m.body.reason)}`;
      case "subject_erased":
        return `<span class="k">erased</span> the personal data of ${esc(m.body.subject)}: ${esc(m.body.reason)}`;
      default: {
        const never: never = m;
        return esc(never);
      }
    }
  }

  #policiesPage(): string {
    const ps = this.#policies;
    const summaries = ps
      .map((p) => `<h2>${esc(p.doc.environment)}</h2><pre>${esc(summarizePolicy(p))}</pre>`)
      .join("");
    const diffs = ps
      .slice(1)
      .map((b, i) => {
        const a = ps[i]!;
        return `<h3>${esc(a.doc.environment)} → ${esc(b.doc.environment)}</h3><pre>${esc(renderPolicyDiff(a, b, diffPolicies(a, b)))}</pre>`;
      })
      .join("");
    return layout("Policies", `${summaries}<h2>Differences</h2>${diffs}`);
  }

  #keysPage(): string {
    const rows = this.#jwks.keys
      .map(
        (k) =>
          `<tr><td>${esc(k.name)}</td><td>${esc(k.role)}</td><td>${esc((k.groups ?? []).join(", "))}</td><td><code>${esc(k.kid)}</code></td><td class="${k.status === "active" ? "ok" : "bad"}">${esc(k.status)}</td></tr>`,
      )
      .join("");
    return layout(
      "Keys",
      `<table><tr><th>name</th><th>role</th><th>groups</th><th>key id</th><th>status</th></tr>${rows}</table>`,
    );
  }

  #identityPage(): string {
    return layout(
      "Identity",
      `<p>This browser holds its own Ed25519 signing key (WebCrypto, not extractable): the console server never sees it. Your public key:</p>
<pre id="public-key">…</pre><p id="registration">…</p>`,
    );
  }
}

/** A step's arguments, or for arguments by reference their size and a link to read them checked. */
function argsView(run: string, step: number, args: unknown): string {
  if (!isArgsRef(args)) return esc(args);
  const href = `/runs/${encodeURIComponent(run)}/steps/${step}/args`;
  return `<span class="argsref">arguments by reference (${args.bytes} bytes, ${esc(args.$ref.slice(0, 19))}…) <a href="${href}">read them</a></span>`;
}
