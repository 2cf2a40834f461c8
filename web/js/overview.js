// The overview page: the node's `stats` reply every 2 s (docs/protocol.md):
// ingest rate from successive counters, node status, partitions, cluster
// members with their breakers, journal and memory figures.
import { $, el, api, showError, clearError, fmtNum, fmtBytes, fmtDuration, poller } from "./util.js";

const REFRESH_MS = 2000;
let prev = null;      // {t, accepted, rejected, requests}
let last = null;      // the last stats reply (test hook)
let rates = { ingest: null, rejected: null, requests: null };

function card(label, value, id) {
  return el("div", { class: "card", "data-k": id },
            el("div", { class: "v", text: value }), el("div", { class: "k", text: label }));
}

function table(headers, rows) {
  return el("table", {},
            el("thead", {}, el("tr", {}, ...headers.map((h) => el("th", { text: h })))),
            el("tbody", {}, ...rows.map((r) => el("tr", {}, ...r.map((c) =>
              c instanceof Node ? el("td", {}, c) : el("td", { text: c }))))));
}

function kvTable(obj, fmt) {
  return table(["counter", "value"],
               Object.entries(obj).sort().map(([k, v]) => [k, fmt(k, v)]));
}

// p50 / p99 of the latency histograms in stats (docs/protocol.md, `stats`),
// for those that have observations.
function latencyCards(lat) {
  const shown = [["cairn_ack_latency_seconds", "ack latency", "ack_latency"],
                 ['cairn_query_latency_seconds{op="query"}', "query latency", "query_latency"],
                 ["cairn_journal_sync_latency_seconds", "journal sync", "sync_latency"]];
  const ms = (x) => (x < 10 ? x.toFixed(2) : fmtNum(Math.round(x)));
  return shown.filter(([k]) => lat[k] && lat[k].count > 0)
    .map(([k, label, key]) => card(`${label} p50 / p99`,
                                   `${ms(lat[k].p50_ms)} / ${ms(lat[k].p99_ms)} ms`, key));
}

function render(s) {
  const c = s.counters || {};
  const ev = s.events || {};
  $("ov-cards").replaceChildren(
    card("status", s.status, "status"),
    card("ingest rate", rates.ingest === null ? "–" : `${fmtNum(rates.ingest)} ev/s`, "ingest_rate"),
    card("rejected rate", rates.rejected === null ? "–" : `${fmtNum(rates.rejected)} ev/s`, "rejected_rate"),
    card("events accepted", fmtNum(ev.accepted), "accepted"),
    card("events rejected", fmtNum(ev.rejected), "rejected"),
    card("series", fmtNum(s.series), "series"),
    card("buckets", fmtNum(s.buckets), "buckets"),
    card("open connections", fmtNum(s.connections ? s.connections.open : null), "connections"),
    card("memory (RSS)", fmtBytes(c.process_resident_memory_bytes), "rss"),
    card("uptime", fmtDuration(s.uptime_ms), "uptime"),
    ...(s.live ? [card("live subscriptions", fmtNum(s.live.subscriptions), "live_subscriptions"),
                  card("live clients", fmtNum(s.live.clients), "live_clients")] : []),
    ...latencyCards(s.latency || {}));
  $("ov-node").textContent = `node ${s.node} · v${s.version || "?"} · ${s.status}`;

  const parts = (s.partitions || []).map((p) => [
    String(p.id), fmtNum(p.series), fmtNum(p.events), fmtNum(p.buckets),
    fmtNum(p.journal_seq), fmtNum(p.snapshot_seq), fmtNum(p.replayed_events),
    p.recovering ? "recovering" : (p.recovery_ms ? `recovered in ${fmtNum(p.recovery_ms)} ms` : "ready"),
    fmtNum(p.duplicates)]);
  $("ov-partitions").replaceChildren(table(
    ["partition", "series", "events", "buckets", "journal seq", "snapshot seq", "replayed", "state", "duplicates"], parts));

  const cl = s.cluster || {};
  const members = (cl.members || []).map((m) => {
    const b = m.breaker || {};
    const state = m.self ? "self" : (b.state || "–");
    return [m.name, m.address || (m.self ? "this node" : "–"), m.status_detail ? `${m.status} (${m.status_detail})` : (m.status || "–"),
            el("span", { class: `breaker breaker-${state.replace(/[^a-z-]/g, "")}`, text: state }),
            m.self ? "–" : fmtNum(b.consecutive_failures), m.self ? "–" : fmtNum(m.in_flight),
            m.hints ? fmtNum(m.hints.pending) : "–"];
  });
  $("ov-cluster-info").textContent = cl.enabled
    ? `cluster: ${fmtNum(cl.up)} up, ${fmtNum(cl.unreachable)} unreachable, partition map v${cl.partition_map ? cl.partition_map.version : "?"}`
    : "single node (cluster off)";
  $("ov-members").replaceChildren(table(
    ["member", "address", "status", "breaker", "failures", "in flight", "hints pending"], members));

  // Membership sagas (docs/sagas.md): what runs, its step and progress.
  const sg = s.sagas;
  $("ov-sagas-panel").hidden = !sg;
  if (sg) {
    const rows = [...(sg.running || []), ...(sg.recent || [])].map((x) => {
      const p = x.progress || {};
      const parts = p.partitions_total ? `${fmtNum(p.partitions_done)}/${fmtNum(p.partitions_total)} partitions` : "";
      const bytes = p.bytes_moved || p.bytes_total ? `${fmtBytes(p.bytes_moved || 0)}${p.bytes_total && p.bytes_total !== p.bytes_moved ? " of " + fmtBytes(p.bytes_total) : ""}` : "";
      const pct = p.partitions_total ? p.partitions_done / p.partitions_total
        : (p.bytes_total ? (p.bytes_moved || 0) / p.bytes_total : (x.phase === "succeeded" ? 1 : 0));
      const bar = el("span", { class: "saga-bar" }, el("span", { class: "saga-fill", style: `width:${Math.round(Math.min(1, pct) * 100)}%` }));
      return [x.id, x.type, x.params ? JSON.stringify(x.params) : "–",
              el("span", { class: `saga-phase saga-${String(x.phase || "").replace(/[^a-z]/g, "")}`, text: x.phase || "–" }),
              `${x.step || "–"}${x.attempts > 1 ? ` (attempt ${x.attempts})` : ""}`,
              bar, [parts, bytes, p.detail || ""].filter(Boolean).join(" · ") || "–", x.error || ""];
    });
    $("ov-sagas-info").textContent = `coordinator: ${sg.leader || "none reachable"} · ${fmtNum((sg.running || []).length)} running`;
    $("ov-sagas").replaceChildren(rows.length
      ? table(["saga", "type", "params", "phase", "step", "", "progress", "last error"], rows)
      : el("p", { class: "muted", text: "no membership changes yet (console: move, decommission, rebalance, join)" }));
  }

  $("ov-journal").replaceChildren(s.journal
    ? kvTable(s.journal, (k, v) => (k.endsWith("bytes") ? fmtBytes(v) : fmtNum(v)))
    : el("p", { class: "muted", text: "journal off (persistence disabled)" }));
  const mem = Object.fromEntries(Object.entries(c).filter(([k]) => k.startsWith("cairn_memory_") || k === "process_resident_memory_bytes"));
  $("ov-memory").replaceChildren(kvTable(mem, (k, v) => (k.includes("bytes") ? fmtBytes(v) : fmtNum(v))));
}

async function refresh() {
  try {
    const s = await api({ op: "stats" });
    const now = performance.now();
    const cur = { t: now, accepted: s.events ? s.events.accepted : 0, rejected: s.events ? s.events.rejected : 0 };
    if (prev && now > prev.t) {
      const dt = (now - prev.t) / 1000;
      rates = { ingest: Math.max(0, (cur.accepted - prev.accepted) / dt),
                rejected: Math.max(0, (cur.rejected - prev.rejected) / dt) };
    }
    prev = cur;
    last = s;
    render(s);
    clearError("stats");
  } catch (e) {
    showError("stats", e);
  }
}

const refresher = poller(refresh, REFRESH_MS);

export function showOverview(on) {
  refresher.show(on);
}

window.__cairnOverview = { stats: () => last, rates: () => rates };
