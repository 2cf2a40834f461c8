// Drives the dashboard's query and overview pages in headless Chromium
// (Debian's, through playwright-core) against a running node and reports
// what it saw as one JSON line on stdout (tests/integration/test_dashboard.py
// asserts on it). Events are sent by this script through POST /api while the
// page stays loaded, so the charts must grow without a reload.
// Usage: node dashboard_live.mjs BASE_URL METRIC SHOT_DIR
// BASE_URL may be https:// (a node with cairn.http.tls-*): the browser takes
// the test CA's certificate as it is (ignoreHTTPSErrors), this script's own
// fetch trusts it through NODE_EXTRA_CA_CERTS.
import { chromium } from "playwright-core";
import path from "node:path";

const [base, metric, shots] = process.argv.slice(2);
const out = { errors: [], console: [] };

async function api(request) {
  const res = await fetch(`${base}/api`, { method: "POST", body: JSON.stringify(request) });
  return res.json();
}

async function ingest(n, value) {
  const now = Date.now();
  const events = [];
  for (let i = 0; i < n; i++)
    events.push({ metric, ts: now - i * 10, value: value + i, tags: { host: i % 2 ? "h1" : "h2" } });
  const r = await api({ op: "ingest", events });
  if (!r.ok || r.accepted !== n) throw new Error(`ingest: ${JSON.stringify(r)}`);
}

const totalCount = (charts) => {
  const c = charts.count;
  if (!c) return 0;
  return c.data.slice(1).reduce((s, ys) => s + ys.reduce((a, y) => a + (y || 0), 0), 0);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") out.console.push(m.text()); });

  // 1. The query page from a hash: metric, two aggregations, grouped by host.
  const hash = `#query?metric=${encodeURIComponent(metric)}&aggs=count,p99&group_by=host&range=5m&step=1s`;
  await page.goto(`${base}/${hash}`);
  await page.waitForFunction(() => window.__cairn && window.__cairn.charts().count
    && window.__cairn.charts().count.data[0].length > 0, null, { timeout: 20000 });
  await page.evaluate(() => { window.__notReloaded = true; });
  const before = await page.evaluate(() => window.__cairn.charts());
  out.count_before = totalCount(before);
  out.labels = before.count.labels;
  out.aggs_shown = await page.$$eval(".chart", (xs) => xs.map((x) => x.dataset.agg));
  out.mode = await page.evaluate(() => window.__cairn.mode());
  out.indicator = await page.textContent("#live-mode");

  // 2. More events: the chart grows while the page stays loaded.
  await ingest(40, 1000);
  await page.waitForFunction((n) => {
    const c = window.__cairn.charts().count;
    const total = c ? c.data.slice(1).reduce((s, ys) => s + ys.reduce((a, y) => a + (y || 0), 0), 0) : 0;
    return total >= n;
  }, out.count_before + 40, { timeout: 20000 }).catch((e) => out.errors.push(`no growth: ${e}`));
  out.count_after = totalCount(await page.evaluate(() => window.__cairn.charts()));
  out.not_reloaded = await page.evaluate(() => window.__notReloaded === true);
  out.has_canvas = await page.$$eval(".chart canvas", (xs) => xs.length);

  // 3. Hover: the legend shows the values under the cursor.
  const plot = await page.$(".chart[data-agg=count] .u-over");
  const box = await plot.boundingBox();
  await page.mouse.move(box.x + box.width - 3, box.y + box.height / 2);
  await page.waitForTimeout(200);
  out.legend_hover = await page.textContent(".chart[data-agg=count] .legend");
  if (shots) await page.screenshot({ path: path.join(shots, "query.png"), fullPage: true });

  // 4. A reload restores the state from the hash.
  await page.reload();
  await page.waitForFunction(() => window.__cairn && window.__cairn.charts().p99, null, { timeout: 20000 });
  out.state_after_reload = await page.evaluate(() => window.__cairn.state());
  out.checked_aggs = await page.$$eval("#aggs input:checked", (xs) => xs.map((x) => x.value));

  // 4b. The metric search filters the picker; a where chip narrows the
  //     query to one group, and its × removes it again.
  await page.fill("#metric-search", "liv");
  out.search_options = await page.$$eval("#metric option", (xs) => xs.map((x) => x.textContent));
  await page.fill("#metric-search", "");
  await page.dispatchEvent("#metric-search", "input");
  await page.selectOption("#where-key", "host");
  await page.dispatchEvent("#where-key", "change");
  await page.selectOption("#where-value", "h1");
  await page.click("#where-add");
  await page.waitForFunction(() => {
    const c = window.__cairn.charts().count;
    return c && c.labels.length === 1;
  }, null, { timeout: 10000 }).catch((e) => out.errors.push(`where: ${e}`));
  out.where_labels = (await page.evaluate(() => window.__cairn.charts())).count.labels;
  out.where_chips = await page.$$eval("#where-chips .chip", (xs) => xs.map((x) => x.title));
  out.where_hash = await page.evaluate(() => decodeURIComponent(location.hash));
  await page.click("#where-chips .chip .x");
  await page.waitForFunction(() => {
    const c = window.__cairn.charts().count;
    return c && c.labels.length === 2;
  }, null, { timeout: 10000 }).catch((e) => out.errors.push(`where removed: ${e}`));

  // 5. A query the node refuses (step 1s over 24 h: not a multiple of the
  //    range tier's resolution) shows its code and message in the banner.
  await page.selectOption("#range", "24h");
  await page.waitForSelector("#banner:not([hidden])", { timeout: 10000 })
    .catch((e) => out.errors.push(`no banner: ${e}`));
  out.banner_server = await page.textContent("#banner");
  if (shots) await page.screenshot({ path: path.join(shots, "error.png"), fullPage: false });
  // A bad input is explained before anything is sent.
  await page.selectOption("#range", "5m");
  await page.fill("#aggs-extra", "median");
  await page.dispatchEvent("#aggs-extra", "change");
  await page.waitForFunction(() => document.querySelector("#banner").textContent.includes("bad_input"),
    null, { timeout: 5000 }).catch((e) => out.errors.push(`no input banner: ${e}`));
  out.banner_input = await page.textContent("#banner");
  await page.fill("#aggs-extra", "");
  await page.dispatchEvent("#aggs-extra", "change");
  await page.waitForFunction(() => document.querySelector("#banner").hidden, null, { timeout: 10000 })
    .catch((e) => out.errors.push(`banner not cleared: ${e}`));
  out.banner_cleared = await page.evaluate(() => document.querySelector("#banner").hidden);

  // 6. The overview page against the stats reply.
  await page.click("#tab-overview");
  await page.waitForFunction(() => window.__cairnOverview.rates().ingest !== null
    && document.querySelector("#ov-partitions tbody tr"), null, { timeout: 15000 });
  const stats = await api({ op: "stats" });
  await page.waitForTimeout(2500);  // one more refresh, after our stats call
  out.stats = { accepted: stats.events.accepted, series: stats.series, partitions: stats.partitions.length,
                rss: stats.counters.process_resident_memory_bytes };
  out.cards = await page.$$eval("#ov-cards .card", (xs) =>
    Object.fromEntries(xs.map((x) => [x.dataset.k, x.querySelector(".v").textContent])));
  out.partition_rows = await page.$$eval("#ov-partitions tbody tr", (xs) => xs.length);
  out.memory_rows = await page.$$eval("#ov-memory tbody tr td:first-child", (xs) => xs.map((x) => x.textContent));
  out.members = await page.$$eval("#ov-members tbody tr", (xs) => xs.map((x) => x.textContent));
  if (shots) await page.screenshot({ path: path.join(shots, "overview.png"), fullPage: true });
  // The ingest rate follows events sent while the page is open.
  await ingest(200, 5);
  await page.waitForFunction(() => window.__cairnOverview.rates().ingest > 0, null, { timeout: 8000 })
    .catch((e) => out.errors.push(`ingest rate stays 0: ${e}`));
  out.rate_card = await page.textContent("#ov-cards .card[data-k=ingest_rate] .v");
  // A reload stays on the overview; the Query tab brings the query back.
  await page.reload();
  await page.waitForSelector("#ov-partitions tbody tr", { timeout: 10000 })
    .catch((e) => out.errors.push(`overview after reload: ${e}`));
  out.overview_reload = { hash: await page.evaluate(() => location.hash),
                          shown: await page.isVisible("#page-overview") };
  await page.click("#tab-query");
  await page.waitForFunction(() => window.__cairn.charts().count, null, { timeout: 10000 })
    .catch((e) => out.errors.push(`back to query: ${e}`));
  out.query_tab = { hash: await page.evaluate(() => decodeURIComponent(location.hash)),
                    shown: await page.isVisible("#page-query") };

  // 7. The WebSocket feed: /v1/live answered by this script (playwright's
  //    routeWebSocket) with the protocol's frames, so the client's side is
  //    checked whether or not the node has the endpoint.
  out.ws = await checkWebSocket(browser);
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));

async function checkWebSocket(browser) {
  const r = { frames: [] };
  const page = await browser.newPage({ viewport: { width: 1280, height: 900 }, ignoreHTTPSErrors: true });
  page.on("pageerror", (e) => out.errors.push(`ws page: ${e}`));
  const t0 = Math.floor(Date.now() / 1000) * 1000 - 10000;
  let sock = null, sub = null, connects = 0;
  await page.routeWebSocket(/\/v1\/live$/, (ws) => {
    connects++;
    sock = ws;
    ws.onMessage((text) => {
      const m = JSON.parse(text);
      r.frames.push(m);
      if (m.op !== "subscribe") return;
      sub = m;
      ws.send(JSON.stringify({ id: m.id, ok: true, type: "snapshot", step: 1000, tier: "1s", partial: false,
        series: [{ tags: { host: "h1" }, points: [{ t: t0, count: 5, p99: 1.5 }] }] }));
    });
  });
  const send = (msg) => sock.send(JSON.stringify({ id: sub.id, ...msg }));
  const charts = () => page.evaluate(() => window.__cairn.charts());
  const hash = `#query?metric=${encodeURIComponent(metric)}&aggs=count,p99&group_by=host&range=5m&step=1s`;
  await page.goto(`${base}/${hash}`);
  await page.waitForFunction(() => window.__cairn && window.__cairn.mode() === "websocket"
    && window.__cairn.charts().count, null, { timeout: 15000 });
  r.indicator = await page.textContent("#live-mode");
  r.subscribe = sub;
  r.snapshot = (await charts()).count.data;
  // An update replaces the point with the same t and appends a new one.
  send({ type: "update", series: [{ tags: { host: "h1" },
    points: [{ t: t0, count: 7, p99: 2 }, { t: t0 + 1000, count: 3, p99: 1 }] }] });
  await page.waitForFunction(() => window.__cairn.updates() >= 1, null, { timeout: 5000 });
  r.after_update = (await charts()).count.data;
  // A new group gets its own line; a point older than the range is dropped.
  send({ type: "update", series: [{ tags: { host: "h2" }, points: [{ t: t0 + 2000, count: 4, p99: 9 }] },
                                  { tags: { host: "h1" }, points: [{ t: t0 - 600000, count: 99, p99: 99 }] }] });
  await page.waitForFunction(() => window.__cairn.updates() >= 2, null, { timeout: 5000 });
  const c2 = await charts();
  r.labels = c2.count.labels;
  r.after_second = c2.count.data;
  // An error frame for the subscription shows in the banner.
  send({ ok: false, error: { code: "too_many_series", message: "the query would return too many series" } });
  await page.waitForSelector("#banner:not([hidden])", { timeout: 5000 }).catch(() => {});
  r.banner = await page.textContent("#banner");
  // A changed query: unsubscribe the old id, subscribe the new query.
  const oldId = sub.id;
  await page.uncheck("#aggs input[value=p99]");
  await page.waitForFunction(() => window.__cairn.charts().count && !window.__cairn.charts().p99,
    null, { timeout: 5000 });
  await page.waitForTimeout(200);
  r.unsubscribed = r.frames.some((f) => f.op === "unsubscribe" && f.id === oldId);
  r.resubscribed = sub.id !== oldId ? sub.query : null;
  // The socket closes: polling takes over, then the client reconnects.
  await sock.close();
  await page.waitForFunction(() => window.__cairn.mode() === "polling", null, { timeout: 5000 })
    .catch((e) => out.errors.push(`no polling after close: ${e}`));
  r.mode_after_close = await page.evaluate(() => window.__cairn.mode());
  await page.waitForFunction(() => window.__cairn.mode() === "websocket", null, { timeout: 10000 })
    .catch((e) => out.errors.push(`no reconnect: ${e}`));
  r.mode_after_reconnect = await page.evaluate(() => window.__cairn.mode());
  r.connects = connects;
  r.t0 = t0;
  if (shots) await page.screenshot({ path: path.join(shots, "websocket.png"), fullPage: true });
  await page.close();
  return r;
}
