"""The dashboard in a real browser: values from clients never become markup.

A node gets events whose tag values are HTML (`<img src=x onerror=...>`, a
quote-and-ampersand string); headless Chromium (Debian's chromium, driven by
playwright-core from tests/browser) opens the dashboard, picks the metric,
groups by that tag, and the test asserts: no injected element exists, the
injected handler never ran, the legend shows the values as literal text, and
the page is served with a Content-Security-Policy that forbids inline script.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

EVIL = '<img src=x onerror="window.__pwned=true">'
QUOTED = 'a"b\'c&d<b>bold</b>'


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_dashboard")
    browser_dir = os.path.join(args.source_dir, "tests", "browser")
    script = os.path.join(browser_dir, "dashboard_xss.mjs")
    node = h.Node(args.bin_dir, args.source_dir, name="dash", keep=args.keep,
                  extra_args=[f"--cairn.http.web-root={os.path.join(args.source_dir, 'web')}"])
    try:
        chk.require(os.path.isdir(os.path.join(browser_dir, "node_modules", "playwright-core")),
                    "playwright-core missing: run scripts/install-deps.sh")
        node.start()
        node.wait_ready()
        now = h.now_ms()
        events = [{"metric": "web.evil", "ts": now - 2000 - i, "value": i,
                   "tags": {"who": EVIL if i % 2 else QUOTED}} for i in range(20)]
        with node.client() as c:
            c.send_lines(events)
            r = c.request({"op": "flush"})
        chk.require(r.get("accepted") == 20, f"flush: {r}")
        shot = os.path.join(node.tmp, "dashboard.png")
        url = f"http://127.0.0.1:{node.http_port}/"
        p = h.run(["node", script, url, "web.evil", "who", shot], timeout=90,
                  cwd=browser_dir)
        lines = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
        chk.require(p.returncode == 0 and lines,
                    f"browser run failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
        out = json.loads(lines[-1])
        h.log(f"browser: {out}")
        chk.check(not out.get("errors"), f"page errors: {out.get('errors')}")
        chk.check(out.get("pwned") is False, "the injected onerror handler ran")
        chk.check(out.get("injected") == 0, f"{out.get('injected')} injected <img> elements")
        legend = out.get("legend", "")
        chk.check(f"who={EVIL}" in legend and f"who={QUOTED}" in legend,
                  f"legend does not show the tag values as text: {legend!r}")
        csp = out.get("csp", "")
        chk.check("script-src 'self'" in csp and "unsafe-inline" not in csp.split("style-src")[0],
                  f"no Content-Security-Policy forbidding inline script: {csp!r}")
        chk.count(4)
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if chk.failures:
            node.dump_log(60)
        try:
            node.stop()
        except h.TestFailure as e:
            chk.check(False, str(e))
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
