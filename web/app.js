// Cairn dashboard: asks the node through POST /api (the same JSON requests as
// the NDJSON protocol) and draws one chart per aggregation.
"use strict";

const $ = (id) => document.getElementById(id);

// Every value that came from a client (metric names, tag keys and values,
// error messages) is escaped before it becomes markup: an event whose tag is
// `<img src=x onerror=...>` must show as text, never run.
const esc = (v) => String(v).replace(/[&<>"']/g, (c) =>
  ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const colors = ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599", "#c2255c"];

async function api(request) {
  const res = await fetch("/api", { method: "POST", body: JSON.stringify(request) });
  const reply = await res.json();
  if (!reply.ok) throw new Error(reply.error ? `${reply.error.code}: ${reply.error.message}` : "request failed");
  return reply;
}

function parsePairs(text) {
  const out = {};
  for (const part of text.split(",").map((s) => s.trim()).filter(Boolean)) {
    const eq = part.indexOf("=");
    if (eq > 0) out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  return out;
}

async function refreshNode() {
  try {
    const ping = await api({ op: "ping" });
    $("node").textContent = `node ${ping.node} · v${ping.version}`;
    $("status").textContent = ping.status;
    $("status").className = `badge ${ping.status}`;
    const stats = await api({ op: "stats" });
    const cards = [
      ["events accepted", stats.events ? stats.events.accepted : 0],
      ["events rejected", stats.events ? stats.events.rejected : 0],
      ["series", stats.series],
      ["buckets", stats.buckets],
      ["connections", stats.connections ? stats.connections.open : "-"],
      ["uptime", `${Math.round(stats.uptime_ms / 1000)} s`],
    ];
    $("summary").innerHTML = cards
      .map(([k, v]) => `<div class="card"><div class="v">${esc(v)}</div><div class="k">${esc(k)}</div></div>`)
      .join("");
  } catch (e) {
    $("status").textContent = "down";
    $("status").className = "badge";
  }
}

async function refreshMetrics() {
  const reply = await api({ op: "metrics" });
  const select = $("metric");
  const current = select.value;
  select.innerHTML = reply.metrics.map((m) => `<option>${esc(m.name)}</option>`).join("");
  if (current && reply.metrics.some((m) => m.name === current)) select.value = current;
}

function drawChart(title, series, agg) {
  const width = 900, height = 220, pad = 40;
  let tmin = Infinity, tmax = -Infinity, vmin = Infinity, vmax = -Infinity;
  for (const s of series)
    for (const p of s.points) {
      const v = p[agg];
      if (v === null || v === undefined) continue;
      tmin = Math.min(tmin, p.t); tmax = Math.max(tmax, p.t);
      vmin = Math.min(vmin, v); vmax = Math.max(vmax, v);
    }
  if (!isFinite(tmin)) return `<div class="chart"><h3>${esc(title)}</h3><p class="muted">no data</p></div>`;
  if (vmin === vmax) { vmin -= 1; vmax += 1; }
  if (tmin === tmax) tmax = tmin + 1;
  const x = (t) => pad + ((t - tmin) / (tmax - tmin)) * (width - 2 * pad);
  const y = (v) => height - pad + 10 - ((v - vmin) / (vmax - vmin)) * (height - 2 * pad);
  const lines = series.map((s, i) => {
    const pts = s.points.filter((p) => p[agg] !== null).map((p) => `${x(p.t).toFixed(1)},${y(p[agg]).toFixed(1)}`);
    return `<polyline fill="none" stroke="${colors[i % colors.length]}" stroke-width="1.5" points="${pts.join(" ")}"/>`;
  });
  const fmtT = (t) => new Date(t).toISOString().slice(11, 19);
  const axes = `
    <line x1="${pad}" y1="${height - pad + 10}" x2="${width - pad}" y2="${height - pad + 10}" stroke="#ccc"/>
    <text x="${pad}" y="${height - 8}">${fmtT(tmin)}</text>
    <text x="${width - pad - 40}" y="${height - 8}">${fmtT(tmax)}</text>
    <text x="2" y="${y(vmax) + 4}">${+vmax.toPrecision(4)}</text>
    <text x="2" y="${y(vmin) + 4}">${+vmin.toPrecision(4)}</text>`;
  const legend = series
    .map((s, i) => `<span style="color:${colors[i % colors.length]}">■ ${esc(Object.entries(s.tags).map(([k, v]) => `${k}=${v}`).join(" ") || "all")}</span>`)
    .join("");
  return `<div class="chart"><h3>${esc(title)}</h3><svg viewBox="0 0 ${width} ${height}" width="100%">${axes}${lines.join("")}</svg><div class="legend">${legend}</div></div>`;
}

async function refreshCharts() {
  const metric = $("metric").value;
  if (!metric) { $("charts").innerHTML = `<p class="muted">No metrics yet: send events to port 7411.</p>`; return; }
  const aggs = $("aggs").value.split(",").map((s) => s.trim()).filter(Boolean);
  const request = { op: "query", metric, from: $("range").value, to: "now", aggs };
  if ($("step").value) request.step = $("step").value;
  const groupBy = $("groupby").value.split(",").map((s) => s.trim()).filter(Boolean);
  if (groupBy.length) request.group_by = groupBy;
  const where = parsePairs($("where").value);
  if (Object.keys(where).length) request.where = where;
  try {
    const reply = await api(request);
    $("error").textContent = reply.partial ? `partial answer: partitions ${reply.missing_partitions} missing` : "";
    $("charts").innerHTML = aggs
      .map((a) => drawChart(`${metric} · ${a} · step ${reply.step / 1000}s · tier ${reply.tier}`, reply.series, a))
      .join("");
  } catch (e) {
    $("error").textContent = e.message;
  }
}

async function tick() {
  await refreshNode();
  try { await refreshMetrics(); } catch (e) { /* node down */ }
  await refreshCharts();
}

for (const id of ["metric", "aggs", "range", "step", "groupby", "where"]) $(id).addEventListener("change", refreshCharts);
tick();
setInterval(() => { if ($("live").checked) tick(); }, 2000);
