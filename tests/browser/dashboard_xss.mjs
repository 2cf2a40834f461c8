// Loads the dashboard in headless Chromium (Debian's, driven by
// playwright-core), shows a metric grouped by a tag whose value is markup,
// and reports what the page did with it as one JSON line on stdout:
//   {"pwned":false,"legend":"...","errors":[...],"screenshot":"..."}
// Usage: node dashboard_xss.mjs URL METRIC GROUP_BY SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [url, metric, groupBy, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const out = { pwned: false, legend: "", errors: [], csp: "" };
try {
  const page = await browser.newPage({ ignoreHTTPSErrors: true });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  const res = await page.goto(url);
  out.csp = res.headers()["content-security-policy"] || "";
  await page.waitForFunction(
    (m) => [...document.querySelectorAll("#metric option")].some((o) => o.textContent === m),
    metric, { timeout: 15000 });
  await page.selectOption("#metric", metric);
  await page.fill("#groupby", groupBy);
  await page.dispatchEvent("#groupby", "change");
  await page.waitForSelector(".legend span", { timeout: 15000 });
  await page.waitForTimeout(500);  // any injected handler would have run
  out.legend = await page.$$eval(".legend span", (xs) => xs.map((x) => x.textContent).join("|"));
  out.injected = await page.$$eval(".legend img, .chart img", (xs) => xs.length);
  out.pwned = await page.evaluate(() => window.__pwned === true);
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
