// The dashboard against a node that requires tokens (docs/protocol.md,
// "Authentication"), in headless Chromium through playwright-core: the page
// asks for a token, a refused one brings the form back with the node's
// reason, an accepted one shows the metric's chart with the live feed on a
// WebSocket (the token offered as the `bearer.<JWT>` subprotocol), and
// signing out asks again. Reports one JSON line on stdout
// (tests/integration/test_dashboard.py asserts on it).
// Usage: node dashboard_auth.mjs BASE_URL METRIC TOKEN SHOT_DIR
import { chromium } from "playwright-core";
import path from "node:path";

const [base, metric, token, shots] = process.argv.slice(2);
const out = { errors: [], console: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const visible = (page, sel) => page.waitForSelector(`${sel}:not([hidden])`, { timeout: 15000 });
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") out.console.push(m.text()); });
  const sent = [];
  page.on("request", (r) => {
    if (r.url().endsWith("/api")) sent.push(r.headers().authorization || "");
  });
  page.on("websocket", (ws) => { out.ws_url = ws.url(); });

  // 1. No token: the form, with the node's reason.
  await page.goto(`${base}/#query?metric=${encodeURIComponent(metric)}&aggs=count&range=5m&step=1s`);
  await visible(page, "#signin");
  out.why_first = await page.textContent("#signin-why");
  out.metrics_without_token = await page.$$eval("#metric option", (xs) => xs.length);
  out.signout_hidden_first = await page.$eval("#signout", (b) => b.hidden);
  out.status_first = await page.textContent("#status");
  await page.screenshot({ path: path.join(shots, "auth-1-signin.png"), fullPage: true });

  // 2. A forged token: refused, the form says so.
  await page.fill("#signin-token", `${token.slice(0, -4)}AAAA`);
  await Promise.all([page.waitForEvent("load"), page.click("#signin button[type=submit]")]);
  await visible(page, "#signin");
  await page.waitForFunction(() => /refused/.test(document.getElementById("signin-why").textContent),
    null, { timeout: 15000 });
  out.why_forged = await page.textContent("#signin-why");

  // 3. The real token: the chart, live over the WebSocket.
  await page.fill("#signin-token", token);
  sent.length = 0;
  await Promise.all([page.waitForEvent("load"), page.click("#signin button[type=submit]")]);
  await page.waitForFunction(() => window.__cairn && window.__cairn.charts().count
    && window.__cairn.charts().count.data[0].length > 0, null, { timeout: 20000 });
  await page.waitForFunction(() => document.getElementById("live-mode").textContent === "live: websocket",
    null, { timeout: 15000 });
  out.indicator = await page.textContent("#live-mode");
  // Hidden as the user sees it (a stylesheet can override the attribute).
  out.signin_hidden = await page.$eval("#signin", (f) => f.hidden && getComputedStyle(f).display === "none");
  await page.waitForFunction(() => document.getElementById("status").textContent === "ready",
    null, { timeout: 15000 });
  out.status = await page.textContent("#status");
  out.signout_visible = await page.$eval("#signout", (b) => !b.hidden);
  const charts = await page.evaluate(() => window.__cairn.charts());
  out.count = charts.count.data.slice(1).reduce((s, ys) => s + ys.reduce((a, y) => a + (y || 0), 0), 0);
  out.metrics = await page.$$eval("#metric option", (xs) => xs.map((x) => x.textContent));
  out.bearer_sent = sent.length > 0 && sent.every((a) => a === `Bearer ${token}`);
  out.token_in_url = (out.ws_url || "").includes(token) || page.url().includes(token);
  await page.screenshot({ path: path.join(shots, "auth-2-signed-in.png"), fullPage: true });

  // 4. Sign out: the form again.
  await Promise.all([page.waitForEvent("load"), page.click("#signout")]);
  await visible(page, "#signin");
  out.signed_out = true;
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
