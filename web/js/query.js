// The query page: metric picker with search, aggregations, where chips,
// group-by, range and step; one uPlot chart per aggregation, fed by the
// live feed (js/live.js). The state lives in the URL hash, so a reload or a
// shared link shows the same charts.
import { $, el, api, showError, clearError, fmtNum, parseDuration, tagLabel } from "./util.js";
import { LiveFeed } from "./live.js";

const uPlot = window.uPlot;  // node_modules/uplot/dist/uPlot.iife.min.js
const AGGS = ["count", "sum", "min", "max", "avg", "last", "rate", "p50", "p90", "p99", "p99.9"];
const AGG_RE = /^(count|sum|min|max|avg|last|rate|p\d{1,2}(\.\d+)?)$/;
const RANGES = { "5m": 3e5, "15m": 9e5, "1h": 36e5, "6h": 216e5, "24h": 864e5 };
const COLORS = ["#1c7ed6", "#e8590c", "#2f9e44", "#ae3ec9", "#f08c00", "#0c8599",
                "#c2255c", "#5c940d", "#6741d9", "#862e9c"];

const state = {
  metric: "", aggs: ["count", "avg", "p99"], where: {}, group_by: [],
  range: "15m", from: "", to: "", step: "", live: true,
};
let metrics = [];         // [{name, series}]
let tagValues = {};       // tag key -> [values] of the current metric
let groups = new Map();   // series key -> {tags, points: Map t -> point}
let reply = null;         // the last snapshot's reply fields (step, tier, partial)
let charts = new Map();   // agg -> {u, legend, labels}
let updates = 0;
let feed = null;
let started = false;      // the first metrics answer came

// ---- URL hash ------------------------------------------------------------

export function readHash(params) {
  if (params.has("metric")) state.metric = params.get("metric");
  if (params.has("aggs")) state.aggs = params.get("aggs").split(",").filter(Boolean);
  if (params.has("group_by")) state.group_by = params.get("group_by").split(",").filter(Boolean);
  state.where = {};
  for (const w of params.getAll("where")) {
    const eq = w.indexOf("=");
    if (eq > 0) state.where[w.slice(0, eq)] = w.slice(eq + 1);
  }
  if (params.has("range")) state.range = params.get("range");
  state.from = params.get("from") || "";
  state.to = params.get("to") || "";
  state.step = params.get("step") || "";
  state.live = params.get("live") !== "0";
}

/// The query page's state as a URL hash.
export function queryHash() {
  const p = new URLSearchParams();
  if (state.metric) p.set("metric", state.metric);
  p.set("aggs", state.aggs.join(","));
  for (const [k, v] of Object.entries(state.where)) p.append("where", `${k}=${v}`);
  if (state.group_by.length) p.set("group_by", state.group_by.join(","));
  p.set("range", state.range);
  if (state.range === "custom") { p.set("from", state.from); p.set("to", state.to); }
  if (state.step) p.set("step", state.step);
  if (!state.live) p.set("live", "0");
  return `#query?${p}`;
}

function writeHash() {
  // The overview keeps its own address; the query state waits for the tab
  // (and survives a reload of the overview in this tab's sessionStorage).
  const hash = queryHash();
  if (!location.hash.startsWith("#overview")) history.replaceState(null, "", hash);
  try { sessionStorage.setItem("cairn.query", hash); } catch (e) { /* storage off */ }
}

// ---- controls ------------------------------------------------------------

function buildAggBoxes() {
  const box = $("aggs");
  box.replaceChildren(...AGGS.map((a) =>
    el("label", { class: "check" },
       el("input", { type: "checkbox", value: a, "data-agg": a }), a)));
  box.addEventListener("change", () => {
    const picked = [...box.querySelectorAll("input:checked")].map((i) => i.value);
    const extra = state.aggs.filter((a) => !AGGS.includes(a));
    state.aggs = [...picked, ...extra];
    changed();
  });
  $("aggs-extra").addEventListener("change", () => {
    const extra = $("aggs-extra").value.split(",").map((s) => s.trim()).filter(Boolean);
    state.aggs = [...state.aggs.filter((a) => AGGS.includes(a)), ...extra];
    changed();
  });
}

function syncControls() {
  for (const box of $("aggs").querySelectorAll("input"))
    box.checked = state.aggs.includes(box.value);
  $("aggs-extra").value = state.aggs.filter((a) => !AGGS.includes(a)).join(",");
  $("range").value = state.range in RANGES || state.range === "custom" ? state.range : "15m";
  $("custom-range").hidden = state.range !== "custom";
  $("from").value = state.from;
  $("to").value = state.to;
  $("step").value = state.step;
  $("groupby").value = state.group_by.join(",");
  $("live").checked = state.live;
  renderMetricOptions();
  renderWhere();
  renderGroupKeys();
}

function renderMetricOptions() {
  const select = $("metric");
  const needle = $("metric-search").value.trim().toLowerCase();
  const shown = metrics.filter((m) => !needle || m.name.toLowerCase().includes(needle)
                                      || m.name === state.metric);
  select.replaceChildren(...shown.map((m) => {
    const o = new Option(m.name, m.name, false, m.name === state.metric);
    o.title = `${m.name}: ${m.series} series`;
    return o;
  }));
  $("metric-count").textContent = `${shown.length} of ${metrics.length} metrics`;
}

function renderWhere() {
  const chips = Object.entries(state.where).map(([k, v]) => {
    const remove = el("button", { type: "button", class: "x", title: "remove", text: "×" });
    remove.addEventListener("click", () => { delete state.where[k]; changed(); });
    return el("span", { class: "chip", title: `${k}=${v}` }, `${k}=${v}`, remove);
  });
  $("where-chips").replaceChildren(...chips);
  const keySel = $("where-key");
  const keys = Object.keys(tagValues).sort();
  const prevKey = keySel.value;
  keySel.replaceChildren(new Option("tag…", ""), ...keys.map((k) => new Option(k, k)));
  if (keys.includes(prevKey)) keySel.value = prevKey;
  renderWhereValues();
}

function renderWhereValues() {
  const values = tagValues[$("where-key").value] || [];
  $("where-value").replaceChildren(new Option("value…", ""), ...values.map((v) => new Option(v, v)));
}

function renderGroupKeys() {
  const keys = Object.keys(tagValues).sort();
  $("groupby-keys").replaceChildren(...keys.map((k) => {
    const box = el("input", { type: "checkbox", value: k });
    box.checked = state.group_by.includes(k);
    box.addEventListener("change", () => {
      state.group_by = box.checked ? [...state.group_by, k] : state.group_by.filter((x) => x !== k);
      changed();
    });
    return el("label", { class: "check" }, box, k);
  }));
}

async function loadMetrics() {
  try {
    const r = await api({ op: "metrics" });
    metrics = r.metrics.slice().sort((a, b) => a.name.localeCompare(b.name));
    clearError("metrics");
    if (!state.metric && metrics.length) {
      state.metric = metrics[0].name;
      if (started) changed(true);
    }
    renderMetricOptions();
  } catch (e) {
    showError("metrics", e);
  }
}

async function loadTags() {
  tagValues = {};
  if (state.metric) {
    try {
      const r = await api({ op: "series", metric: state.metric, limit: 1000 });
      const sets = {};
      for (const s of r.series)
        for (const [k, v] of Object.entries(s.tags)) (sets[k] ||= new Set()).add(v);
      for (const [k, set] of Object.entries(sets)) tagValues[k] = [...set].sort();
      clearError("series");
    } catch (e) {
      showError("series", e);
    }
  }
  renderWhere();
  renderGroupKeys();
}

// ---- the query -----------------------------------------------------------

/// The query op's fields from the state, or throws an Error explaining the
/// bad input (shown in the banner; nothing is sent).
function buildQuery() {
  if (!state.metric) return null;
  if (!state.aggs.length) throw new Error("pick at least one aggregation");
  const bad = state.aggs.filter((a) => !AGG_RE.test(a));
  if (bad.length)
    throw new Error(`unknown aggregation ${bad.join(", ")}: use count, sum, min, max, avg, last, rate or pNN / pNN.N`);
  const q = { metric: state.metric, aggs: state.aggs };
  if (state.range === "custom") {
    const from = Date.parse(state.from), to = Date.parse(state.to);
    if (Number.isNaN(from) || Number.isNaN(to)) throw new Error("custom range: give both from and to");
    if (from >= to) throw new Error("custom range: from must be before to");
    q.from = from; q.to = to;
  } else {
    q.from = `-${state.range in RANGES ? state.range : "15m"}`;
    q.to = "now";
  }
  if (state.step) {
    if (parseDuration(state.step) === null) throw new Error(`step "${state.step}": use a duration such as 10s, 1m, 1h`);
    q.step = state.step;
  }
  if (Object.keys(state.where).length) q.where = { ...state.where };
  if (state.group_by.length) q.group_by = [...state.group_by];
  return q;
}

function changed(metricChanged = false) {
  writeHash();
  syncControls();
  if (metricChanged) loadTags();
  run();
}

function run() {
  let q;
  try {
    q = buildQuery();
    clearError("input");
  } catch (e) {
    showError("input", { code: "bad_input", message: e.message });
    feed.follow(null, false);
    return;
  }
  groups = new Map();
  reply = null;
  clearCharts();
  clearError("query");  // the new query's own answer shows again if it fails
  $("query-info").textContent = "";
  if (!q) {
    $("charts").replaceChildren(el("p", { class: "muted", text: "No metrics yet: send events to the node." }));
    feed.follow(null, false);
    return;
  }
  feed.follow(q, state.live && state.range !== "custom");
}

// ---- chart data ----------------------------------------------------------

const keyOf = (tags) => JSON.stringify(Object.entries(tags || {}).sort());

function mergeSeries(series, replace) {
  if (replace) groups = new Map();
  for (const s of series) {
    const key = keyOf(s.tags);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = { tags: s.tags || {}, points: new Map() }));
    for (const p of s.points || []) g.points.set(p.t, p);
  }
  if (state.range in RANGES) {
    const step = reply && reply.step ? reply.step : 0;
    const cutoff = Date.now() - RANGES[state.range] - step;
    for (const [key, g] of groups) {
      for (const t of g.points.keys()) if (t < cutoff) g.points.delete(t);
      if (!g.points.size) groups.delete(key);
    }
  }
}

function onSnapshot(r) {
  clearError("query");
  reply = { step: r.step, tier: r.tier, partial: r.partial, missing: r.missing_partitions };
  mergeSeries(r.series || [], true);
  draw();
}

function onUpdate(series) {
  updates++;
  mergeSeries(series, false);
  draw();
}

function onError(e) {
  showError("query", e);
}

function onMode(mode) {
  const ind = $("live-mode");
  ind.textContent = mode === "off" ? "live: off" : `live: ${mode}`;
  ind.className = `badge live-${mode}`;
}

function clearCharts() {
  for (const c of charts.values()) c.u.destroy();
  charts = new Map();
  $("charts").replaceChildren();
}

function draw() {
  const sorted = [...groups.values()].sort((a, b) => tagLabel(a.tags).localeCompare(tagLabel(b.tags)));
  const seen = [...new Set(sorted.flatMap((g) => [...g.points.keys()]))].sort((a, b) => a - b);
  // Buckets without data are omitted by the node: an empty slot after a
  // point breaks the line there instead of drawing across the gap.
  const step = reply && reply.step ? reply.step : 0;
  const ts = [];
  for (let i = 0; i < seen.length; i++) {
    ts.push(seen[i]);
    if (step && i + 1 < seen.length && seen[i + 1] - seen[i] > step) ts.push(seen[i] + step);
  }
  const labels = sorted.map((g) => tagLabel(g.tags));
  $("query-info").textContent = reply
    ? `step ${fmtNum(reply.step / 1000)} s · tier ${reply.tier} · ${sorted.length} series · ${seen.length} points`
      + (reply.partial ? ` · partial: partitions ${(reply.missing || []).join(",")} missing` : "")
    : "";
  if (!sorted.length) {
    clearCharts();
    $("charts").replaceChildren(el("p", { class: "muted nodata", text: "No data in this range." }));
    return;
  }
  if ($("charts").querySelector(".nodata")) $("charts").replaceChildren();
  for (const agg of state.aggs) {
    const data = [ts.map((t) => t / 1000),
                  ...sorted.map((g) => ts.map((t) => { const p = g.points.get(t); return p && p[agg] != null ? p[agg] : null; }))];
    let c = charts.get(agg);
    if (c && c.labels.join("\n") !== labels.join("\n")) {
      c.u.destroy(); c.box.remove(); charts.delete(agg); c = null;
    }
    if (!c) c = makeChart(agg, labels, data);
    else c.u.setData(data);
    c.showLast();
  }
  // Keep the charts in the order of the aggregations.
  $("charts").replaceChildren(...state.aggs.map((a) => charts.get(a).box));
}

/// Tick labels: seconds when the axis spans under 10 minutes, the date as
/// well when it spans more than a day.
function timeLabel(u) {
  const span = u.scales.x.max - u.scales.x.min;
  const opts = span < 600 ? { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false }
    : { hour: "2-digit", minute: "2-digit", hour12: false };
  if (span > 86400) Object.assign(opts, { month: "short", day: "numeric" });
  return (v) => new Date(v * 1000).toLocaleString("en-GB", opts);
}

function xRange(min, max) {
  if (state.range in RANGES) {
    const now = Date.now() / 1000;
    return [now - RANGES[state.range] / 1000, now];
  }
  const from = Date.parse(state.from), to = Date.parse(state.to);
  if (!Number.isNaN(from) && !Number.isNaN(to) && from < to) return [from / 1000, to / 1000];
  return min === max ? [min - 60, max + 60] : [min, max];
}

function makeChart(agg, labels, data) {
  const box = el("div", { class: "chart", "data-agg": agg });
  const title = el("h3", { text: `${state.metric} · ${agg}` });
  const plot = el("div", { class: "plot" });
  const legend = el("div", { class: "legend" });
  const time = el("span", { class: "t" });
  const values = labels.map((label, i) => {
    const v = el("b", { class: "v" });
    legend.append(el("span", { class: "item" },
                     el("i", { class: "sw", style: `background:${COLORS[i % COLORS.length]}` }),
                     label, " ", v));
    return v;
  });
  legend.prepend(time);
  box.append(title, plot, legend);
  $("charts").append(box);
  const c = { box, legend, labels };
  const showAt = (idx) => {
    const d = c.u.data;
    if (idx === null || idx === undefined || idx < 0) {
      // Not hovering: each series' latest value.
      time.textContent = "latest";
      values.forEach((v, i) => {
        const ys = d[i + 1];
        let j = ys.length - 1;
        while (j >= 0 && ys[j] === null) j--;
        v.textContent = j >= 0 ? fmtNum(ys[j]) : "–";
      });
      return;
    }
    time.textContent = new Date(d[0][idx] * 1000).toLocaleTimeString("en-GB", { hour12: false });
    values.forEach((v, i) => { v.textContent = fmtNum(d[i + 1][idx]); });
  };
  c.showLast = () => showAt(c.u.cursor.idx);
  const opts = {
    width: Math.max(300, $("charts").clientWidth - 24),
    height: 220,
    legend: { show: false },   // our own legend (text only, see js/util.js)
    cursor: { points: { size: 6 } },
    // The x axis spans the whole range asked for, not just the points seen.
    scales: { x: { time: true, range: (u, min, max) => xRange(min, max) } },
    series: [{}, ...labels.map((label, i) => ({
      label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false,
      points: { show: data[0].length < 60 },
    }))],
    axes: [{ space: 70, values: (u, splits) => splits.map(timeLabel(u)) }, { size: 60, values: (u, vals) => vals.map((v) => fmtNum(v)) }],
    hooks: { setCursor: [(u) => showAt(u.cursor.idx)] },
  };
  c.u = new uPlot(opts, data, plot);
  charts.set(agg, c);
  return c;
}

// ---- setup ---------------------------------------------------------------

export function initQuery(params) {
  readHash(params);
  feed = new LiveFeed({ onSnapshot, onUpdate, onError, onMode });
  buildAggBoxes();
  $("metric-search").addEventListener("input", renderMetricOptions);
  $("metric").addEventListener("change", () => { state.metric = $("metric").value; state.where = {}; state.group_by = []; changed(true); });
  $("where-key").addEventListener("change", renderWhereValues);
  $("where-add").addEventListener("click", () => {
    const k = $("where-key").value, v = $("where-value").value;
    if (!k || !v) { showError("input", { code: "bad_input", message: "where: pick a tag and a value" }); return; }
    state.where[k] = v;
    changed();
  });
  $("groupby").addEventListener("change", () => {
    state.group_by = $("groupby").value.split(",").map((s) => s.trim()).filter(Boolean);
    changed();
  });
  $("range").addEventListener("change", () => {
    state.range = $("range").value;
    if (state.range === "custom" && !state.from) {
      const iso = (ms) => new Date(ms - new Date().getTimezoneOffset() * 6e4).toISOString().slice(0, 16);
      state.from = iso(Date.now() - 36e5); state.to = iso(Date.now());
    }
    changed();
  });
  for (const id of ["from", "to"]) $(id).addEventListener("change", () => { state[id] = $(id).value; changed(); });
  $("step").addEventListener("change", () => { state.step = $("step").value.trim(); changed(); });
  $("live").addEventListener("change", () => { state.live = $("live").checked; changed(); });
  window.addEventListener("resize", () => {
    for (const c of charts.values()) c.u.setSize({ width: Math.max(300, $("charts").clientWidth - 24), height: 220 });
  });
  syncControls();
  loadMetrics().then(() => { started = true; writeHash(); syncControls(); loadTags(); run(); });
  setInterval(loadMetrics, 10000);
  // Test hook (tests/browser): what the charts show, without reading pixels.
  window.__cairn = {
    mode: () => feed.mode,
    updates: () => updates,
    state: () => JSON.parse(JSON.stringify(state)),
    charts: () => Object.fromEntries([...charts].map(([agg, c]) =>
      [agg, { labels: c.labels, data: c.u.data.map((a) => Array.from(a)) }])),
  };
}
