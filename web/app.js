// Cairn dashboard entry (an ES module, no build step): the header, the
// pages (#query, #overview, #alerts) and the node's status. The pages talk to the node
// through POST /api (docs/protocol.md) and the live feed /v1/live.
import { $, api, showError, clearError, authToken, setAuthToken, onUnauthorized } from "./js/util.js";
import { initQuery, queryHash } from "./js/query.js";
import { showOverview } from "./js/overview.js";
import { showAlerts } from "./js/alerts.js";

function route() {
  const hash = location.hash.replace(/^#/, "");
  const page = hash.startsWith("overview") ? "overview" : hash.startsWith("alerts") ? "alerts" : "query";
  $("page-query").hidden = page !== "query";
  $("page-overview").hidden = page !== "overview";
  $("page-alerts").hidden = page !== "alerts";
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.page === page);
  showOverview(page === "overview");
  showAlerts(page === "alerts");
  return page;
}

async function ping() {
  try {
    const p = await api({ op: "ping" });
    $("node").textContent = `node ${p.node} · v${p.version}`;
    $("status").textContent = p.status;
    $("status").className = `badge ${p.status}`;
    clearError("node");
  } catch (e) {
    // A node that wants a token is up: the sign-in form says what to do.
    const locked = e.code === "unauthorized";
    $("status").textContent = locked ? "sign in" : "down";
    $("status").className = `badge ${locked ? "locked" : "down"}`;
    showError("node", e);
  }
}

// The query state: the address's, else this tab's last one (a reload of
// the overview), else the defaults.
let saved = "";
try { saved = sessionStorage.getItem("cairn.query") || ""; } catch (e) { /* storage off */ }
const hash = (location.hash.startsWith("#query") ? location.hash : saved).replace(/^#/, "");
const q = hash.indexOf("?");
initQuery(new URLSearchParams(hash.startsWith("query") && q >= 0 ? hash.slice(q + 1) : ""));
// The query page keeps its state in the hash; going back to it restores it.
$("tab-query").addEventListener("click", (e) => {
  e.preventDefault();
  history.pushState(null, "", queryHash());
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("popstate", route);
// The dashboard's own failures (a bug, a chart that cannot render) go to
// the banner the user looks at, not only to the browser console.
window.addEventListener("error", (ev) => {
  showError("dashboard", { code: "script_error", message: ev.message || String(ev.error) });
});
window.addEventListener("unhandledrejection", (ev) => {
  const r = ev.reason;
  showError("dashboard", { code: (r && r.code) || "script_error", message: (r && r.message) || String(r) });
});
// Sign-in (docs/protocol.md, "Authentication"): a node that wants a token
// answers 401; the form asks for one, the tab keeps it (sessionStorage) and
// the page starts over with it. A refused token brings the form back with
// the node's reason.
onUnauthorized((err) => {
  const form = $("signin");
  $("signin-why").textContent = authToken()
    ? `The node refused the token: ${err.message}`
    : `This node requires a token: ${err.message}`;
  if (form.hidden) {
    form.hidden = false;
    $("signin-token").focus();
  }
});
$("signin").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("signin-token").value.trim();
  if (!token) return;
  setAuthToken(token);
  location.reload();
});
$("signout").hidden = !authToken();
$("signout").addEventListener("click", () => {
  setAuthToken("");
  location.reload();
});
route();
ping();
setInterval(ping, 5000);
