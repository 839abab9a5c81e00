/** Escape text for HTML; every value from the trace goes through this before it is shown. */
export function esc(v: unknown): string {
  const s = typeof v === "string" ? v : (JSON.stringify(v) ?? "");
  return s
    .replace(/&/g, "&amp;")
    .replace(/</g, "&lt;")
    .replace(/>/g, "&gt;")
    .replace(/"/g, "&quot;")
    .replace(/'/g, "&#39;");
}

/** The CSS class of a run's status: open, completed, ended by a person (cancelled, resolved), or not. */
export function outcomeClass(outcome: string | null): string {
  if (outcome === null) return "open";
  if (outcome === "completed") return "ok";
  return outcome === "cancelled" || outcome === "resolved" ? "person" : "bad";
}

export function time(ms: number | undefined): string {
  return ms === undefined ? "" : new Date(ms).toISOString().replace("T", " ").slice(0, 19);
}

const STYLE = `
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:8px 16px;display:flex;gap:16px;align-items:center}
header a{color:#cfe0ff;text-decoration:none}header .me{margin-left:auto;font-size:12px}
main{padding:16px;max-width:1200px}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e6ea;padding:4px 8px;text-align:left;vertical-align:top}
.ok{color:#11772b}.bad{color:#b3261e}.open{color:#9a6700}.person{color:#3a5a9a}pre{background:#fff;padding:8px;overflow:auto}
.step{background:#fff;margin:12px 0;padding:8px 12px;border-left:4px solid #8aa4d6}
.msg{margin:6px 0}.k{font-weight:600}.small{font-size:12px;color:#556}
button{margin-right:6px}#status{padding:6px 0;font-weight:600}
`;

export function layout(title: string, body: string): string {
  return `<!doctype html><html><head><meta charset="utf-8"><title>${esc(title)} · trias</title>
<style>${STYLE}</style></head><body>
<header><b>trias</b><a href="/">Runs</a><a href="/approvals">Approvals</a><a href="/policies">Policies</a><a href="/keys">Keys</a><a href="/identity">Identity</a><span class="me" id="me">identity: …</span></header>
<main id="main"><h1>${esc(title)}</h1><div id="status" role="status"></div>${body}</main>
<script type="module" src="/app.js"></script></body></html>`;
}
