/**
 * The browser side of the console, served as /app.js. It holds the person's signing key:
 * an Ed25519 key made by WebCrypto with `extractable: false`, kept in IndexedDB, so the
 * private half never leaves the browser (not to the console server, not to script). The
 * server prepares the exact bytes of a verdict or an order; this signs them and sends the
 * signature.
 * Plain JavaScript with no dependencies: the page is served from this string as it is.
 */
export const CLIENT_JS = String.raw`
const DB = "trias-identity";
function idb() {
  return new Promise((resolve, reject) => {
    const r = indexedDB.open(DB, 1);
    r.onupgradeneeded = () => r.result.createObjectStore("keys");
    r.onsuccess = () => resolve(r.result);
    r.onerror = () => reject(r.error);
  });
}
async function idbGet(k) {
  const db = await idb();
  return new Promise((res, rej) => {
    const q = db.transaction("keys").objectStore("keys").get(k);
    q.onsuccess = () => res(q.result);
    q.onerror = () => rej(q.error);
  });
}
async function idbPut(k, v) {
  const db = await idb();
  return new Promise((res, rej) => {
    const t = db.transaction("keys", "readwrite");
    t.objectStore("keys").put(v, k);
    t.oncomplete = () => res();
    t.onerror = () => rej(t.error);
  });
}
const b64url = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const b64 = (buf) => btoa(String.fromCharCode(...new Uint8Array(buf)));
const unb64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));

async function myKey() {
  let k = await idbGet("signing");
  if (!k) {
    // Non-extractable: the private key can sign, never be exported.
    const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, false, ["sign", "verify"]);
    const x = b64url(await crypto.subtle.exportKey("raw", pair.publicKey));
    k = { privateKey: pair.privateKey, x };
    await idbPut("signing", k);
  }
  return k;
}

async function whoami() {
  const k = await myKey();
  const r = await fetch("/api/whoami?x=" + encodeURIComponent(k.x));
  return { x: k.x, ...(await r.json()) };
}

function status(text, ok) {
  const s = document.getElementById("status");
  if (!s) return;
  s.textContent = text;
  s.className = ok ? "ok" : "bad";
}

// What the server prepared (a verdict or an order) is signed by this browser's key and sent
// back; the private key never leaves the browser.
async function signPrepared(path, fields) {
  const me = await whoami();
  if (!me.kid) return status("this browser's key is not registered: see Identity", false);
  const prep = await (await fetch(path, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...fields, kid: me.kid }) })).json();
  if (prep.error) return status("refused: " + prep.error, false);
  const { privateKey } = await myKey();
  const sig = await crypto.subtle.sign({ name: "Ed25519" }, privateKey, unb64(prep.payload));
  const done = await (await fetch("/api/decide", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ id: prep.id, sig: b64(sig) }) })).json();
  if (done.error) return status("refused: " + done.error, false);
  status(done.message, true);
}

async function decide(btn) {
  const run = btn.dataset.run, step = Number(btn.dataset.step), decision = btn.dataset.decision;
  const box = document.querySelector('[data-reason="' + run + "-" + step + '"]');
  const reason = (box && box.value.trim()) || "";
  if (decision === "reject" && !reason) return status("a rejection needs a reason", false);
  return signPrepared("/api/prepare", { run, step, decision, reason });
}

// A person's order about a run (cancel, or a decision on an escalated one), signed the same way.
async function order(btn) {
  const run = btn.dataset.run, action = btn.dataset.order;
  const box = document.querySelector('[data-order-reason="' + run + '"]');
  const reason = (box && box.value.trim()) || "";
  if (!reason) return status("a " + action + " needs a reason", false);
  return signPrepared("/api/prepare-order", { run, action, reason });
}

document.addEventListener("click", (e) => {
  const btn = e.target.closest("button[data-decision]");
  if (btn) decide(btn).catch((err) => status(String(err), false));
  const ord = e.target.closest("button[data-order]");
  if (ord) order(ord).catch((err) => status(String(err), false));
});

async function refresh() {
  if (document.activeElement && document.activeElement.tagName === "TEXTAREA") return;
  const html = await (await fetch(location.href)).text();
  const doc = new DOMParser().parseFromString(html, "text/html");
  const main = document.getElementById("main"), next = doc.getElementById("main");
  const st = document.getElementById("status");
  if (main && next) {
    const keep = st ? st.outerHTML : "";
    main.innerHTML = next.innerHTML;
    const ns = document.getElementById("status");
    if (ns && keep) ns.outerHTML = keep;
  }
  fillIdentity();
}
let timer = null;
new EventSource("/api/events").onmessage = () => {
  clearTimeout(timer);
  timer = setTimeout(() => refresh().catch(() => {}), 200);
};

async function fillIdentity() {
  const me = await whoami();
  const el = document.getElementById("me");
  if (el) el.textContent = me.kid ? "signed in as " + me.name + " (" + me.groups.join(", ") + ")" : "not registered";
  const pk = document.getElementById("public-key");
  if (pk) pk.textContent = me.x;
  const reg = document.getElementById("registration");
  if (reg) reg.textContent = me.kid ? "registered as " + me.name + " (" + me.kid + "), groups " + me.groups.join(", ") : "not registered: an administrator runs  trias keys add-human <name> --group <group> --public-key " + me.x;
  document.body.dataset.identity = me.kid ? me.name : "";
}
fillIdentity().catch((e) => status(String(e), false));
`;
