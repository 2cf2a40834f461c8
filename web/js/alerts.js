// The alerts page: every rule with its instances by state (alert.list), the
// instances of the selected rule (alert.get) and the history of state
// changes and deliveries with the dead letters (alert.history), refreshed
// every 2 s (docs/alerting.md). Rule names, labels and messages come from
// clients: they reach the page as text only (util.js `el`).
import { $, el, api, showError, clearError, fmtNum, poller } from "./util.js";

const REFRESH_MS = 2000;
let selected = "";

function table(headers, rows) {
  return el("table", {},
            el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
            el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) =>
              c instanceof Node ? el("td", {}, c) : el("td", { text: c }))))));
}

const stateBadge = (s) => el("span", { class: `alert-state alert-${String(s).replace(/[^a-z]/g, "")}`, text: s });
const when = (t) => (t ? new Date(t).toISOString().replace("T", " ").replace(/\.\d+Z$/, "Z") : "–");
const labels = (o) => Object.entries(o || {}).map(([k, v]) => `${k}=${v}`).join(" ") || "(all)";

function renderRules(rules) {
  if (!rules.length) {
    $("al-rules").replaceChildren(el("p", { class: "muted", text: "no alert rules (create one with alert.create, docs/alerting.md)" }));
    return;
  }
  // In a cluster each rule names the member that evaluates it (docs/alerting.md).
  const owners = rules.some((r) => r.owner !== undefined);
  $("al-rules").replaceChildren(table(
    ["rule", "condition", "window", "for", "severity", "firing", "pending", "resolved", "inactive",
     ...(owners ? ["owner"] : [])],
    rules.map((r) => {
      const a = el("a", { href: "#alerts", text: r.name });
      a.addEventListener("click", (e) => { e.preventDefault(); selected = r.name; refresh(); });
      const n = r.instances || {};
      return [a, `${r.agg}(${r.metric}) ${r.op} ${r.threshold}`, r.window, r.for, r.severity,
              fmtNum(n.firing), fmtNum(n.pending), fmtNum(n.resolved), fmtNum(n.inactive),
              ...(owners ? [r.owner || "-"] : [])];
    })));
}

function renderInstances(reply) {
  $("al-selected").textContent = reply ? `instances of ${reply.rule.name}` : "instances";
  $("al-instances").replaceChildren(reply
    ? table(["group", "state", "value", "active since", "fired at", "episode"],
            reply.instances.map((x) => [labels(x.labels), stateBadge(x.state), fmtNum(x.value),
                                        when(x.active_since), when(x.fired_at), fmtNum(x.episode)]))
    : el("p", { class: "muted", text: "select a rule" }));
}

function renderHistory(h) {
  const rows = [...h.history].reverse().map((x) => {
    let what = x.event || "";
    if (x.kind === "state") what = `${x.from} → ${x.to} (value ${fmtNum(x.value)})`;
    if (x.kind === "delivery") what = `${x.status} to ${x.receiver}: ${x.outcome} (HTTP ${x.http_status}, attempt ${x.attempts})${x.error ? " " + x.error : ""}`;
    return [when(x.at), x.rule || "", x.group || "", x.kind, what];
  });
  $("al-history").replaceChildren(table(["when", "rule", "group", "kind", "what"], rows));
  $("al-dead").replaceChildren(h.dead_letters.length
    ? table(["rule", "status", "key", "receiver", "attempts", "last error"],
            h.dead_letters.map((d) => [d.rule, d.status, d.key,
                                       (d.receivers && d.receivers[d.receiver] ? d.receivers[d.receiver].url : "?"),
                                       fmtNum(d.attempts), d.last_error]))
    : el("p", { class: "muted", text: "no dead letters" }));
}

async function refresh() {
  try {
    const list = await api({ op: "alert.list" });
    renderRules(list.rules);
    if (selected && !list.rules.some((r) => r.name === selected)) selected = "";
    renderInstances(selected ? await api({ op: "alert.get", name: selected }) : null);
    renderHistory(await api({ op: "alert.history", limit: 50, ...(selected ? { rule: selected } : {}) }));
    clearError("alerts");
  } catch (e) {
    showError("alerts", e);
  }
}

const refresher = poller(refresh, REFRESH_MS);

export function showAlerts(on) {
  refresher.show(on);
}
