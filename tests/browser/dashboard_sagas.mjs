// Opens the dashboard's overview page in headless Chromium (Debian's, driven
// by playwright-core) and reports its "Membership changes" panel
// (web/js/overview.js) as one JSON line on stdout:
//   {"info":"coordinator: ...","rows":[["saga","type",...],...],"errors":[...]}
// Usage: node dashboard_sagas.mjs URL SCREENSHOT_PATH
import { chromium } from "playwright-core";

const [url, shot] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"],
});
const out = { info: "", rows: [], errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  page.on("pageerror", (e) => out.errors.push(String(e)));
  await page.goto(url + "/#overview");
  await page.waitForSelector("#ov-sagas-panel:not([hidden]) #ov-sagas tbody tr",
                             { timeout: 20000 });
  out.info = await page.textContent("#ov-sagas-info");
  out.rows = await page.$$eval("#ov-sagas tbody tr", (trs) =>
    trs.map((tr) => [...tr.querySelectorAll("td")].map((td) => td.textContent)));
  await page.$eval("#ov-sagas-panel", (p) => p.scrollIntoView());
  if (shot) await page.screenshot({ path: shot, fullPage: true });
} catch (e) {
  out.errors.push(String(e));
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
