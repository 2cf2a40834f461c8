// Shared helpers of the dashboard. Every value that came from a client
// (metric names, tag keys and values, error messages) reaches the page as
// text (textContent, Option, attribute values), never as markup: an event
// whose tag is `<img src=x onerror=...>` must show as text, never run.

export const $ = (id) => document.getElementById(id);

/// Creates an element; `text` becomes its textContent, `attrs` its
/// attributes (set with setAttribute, so never parsed as markup).
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "text") node.textContent = String(v);
    else if (k === "class") node.className = v;
    else if (k === "style") node.style.cssText = v;
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/// An error reply of the node: keeps its stable code (docs/protocol.md).
export class ApiError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}

// The token this tab signed in with (docs/protocol.md, "Authentication"):
// kept in sessionStorage, so it lives as long as the tab and is sent only to
// this node (Authorization on /api, a subprotocol on /v1/live).
const TOKEN_KEY = "cairn.token";

export function authToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ""; } catch (e) { return ""; }
}

export function setAuthToken(token) {
  try {
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch (e) { /* storage off: the token lasts until the page reloads */ }
  memoryToken = token || "";
}

let memoryToken = "";
const currentToken = () => authToken() || memoryToken;

// Called with the ApiError of every 401 answer (the sign-in form).
const unauthorizedHandlers = [];
export function onUnauthorized(fn) { unauthorizedHandlers.push(fn); }
export function reportUnauthorized(err) { for (const fn of unauthorizedHandlers) fn(err); }

/// The subprotocols a WebSocket to this node offers: `bearer.<JWT>` carries
/// the token (browsers cannot set an Authorization header on an upgrade).
export function socketProtocols() {
  const t = currentToken();
  return t ? ["cairn", `bearer.${t}`] : [];
}

/// POST /api with one request (the NDJSON protocol's JSON); throws ApiError
/// for an error reply, for a network failure and for an answer that is not
/// the protocol's JSON. Error replies come with their HTTP status (400, 413,
/// 429, 503, ...: docs/protocol.md, "HTTP statuses") and the same JSON body,
/// so the body is read whatever the status; `status` keeps the HTTP status.
export async function api(request) {
  let res;
  try {
    const headers = {};
    const t = currentToken();
    if (t) headers.Authorization = `Bearer ${t}`;
    res = await fetch("/api", { method: "POST", headers, body: JSON.stringify(request) });
  } catch (e) {
    throw new ApiError("network", `node not reachable: ${e.message}`);
  }
  let text = "";
  try {
    text = await res.text();
  } catch (e) {
    throw new ApiError("network", `answer cut off (HTTP ${res.status}): ${e.message}`);
  }
  let reply;
  try {
    reply = JSON.parse(text);
  } catch (e) {
    // Not ours (a proxy's error page, a plain-text 404): show its start.
    const snippet = text.trim().slice(0, 120);
    const err = new ApiError(`http_${res.status}`,
      `answer is not JSON (HTTP ${res.status} ${res.statusText})${snippet ? `: ${snippet}` : ""}`);
    err.status = res.status;
    throw err;
  }
  if (!reply || reply.ok === false || !res.ok) {
    const e = (reply && reply.error) || {};
    const err = new ApiError(e.code || `http_${res.status}`,
      e.message || `request failed (HTTP ${res.status})`);
    err.status = res.status;
    if (res.status === 401) reportUnauthorized(err);
    throw err;
  }
  return reply;
}

// One banner per source ("query", "overview", "live", ...): a source clears
// its own message when it succeeds again.
const banners = new Map();

export function showError(source, err) {
  const code = err && err.code ? err.code : "error";
  const message = err && err.message ? err.message : String(err);
  banners.set(source, `${source}: ${code}: ${message}`);
  renderBanner();
}

export function clearError(source) {
  if (banners.delete(source)) renderBanner();
}

function renderBanner() {
  const box = $("banner");
  box.replaceChildren(...[...banners.values()].map((m) => el("div", { class: "msg", text: m })));
  box.hidden = banners.size === 0;
}

export function fmtNum(v, digits = 3) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e15 || a < 1e-3)) return v.toExponential(2);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  return v.toLocaleString("en-US", { maximumSignificantDigits: Math.max(digits, 3) });
}

export function fmtBytes(v) {
  if (v === null || v === undefined) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (Math.abs(v) >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function fmtDuration(ms) {
  if (ms === null || ms === undefined) return "–";
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/// "15m", "10s", "1h", "2d" -> ms (the protocol's duration units); null if not one.
export function parseDuration(text) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$/.exec(String(text).trim());
  if (!m) return null;
  const mult = { ms: 1, s: 1e3, m: 6e4, h: 36e5, d: 864e5, w: 6048e5 }[m[2]];
  return Number(m[1]) * mult;
}

export const tagLabel = (tags) =>
  Object.entries(tags || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "all";

// A refresh loop for a page: poller(fn, ms).show(on) starts it (fn at once,
// then ms after each run finishes) or stops it; a page switch ends the loop
// of the previous one even while its fn is still awaiting.
export function poller(fn, ms) {
  let timer = null;
  let gen = 0;
  return {
    show(on) {
      clearTimeout(timer);
      timer = null;
      const mine = ++gen;
      if (!on) return;
      const loop = async () => {
        await fn();
        if (mine === gen) timer = setTimeout(loop, ms);
      };
      loop();
    },
  };
}
