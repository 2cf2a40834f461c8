"""The dashboard in a real browser: values from clients never become markup,
and the query and overview pages work against a real node.

A node gets events whose tag values are HTML (`<img src=x onerror=...>`, a
quote-and-ampersand string); headless Chromium (Debian's chromium, driven by
playwright-core from tests/browser) opens the dashboard, picks the metric,
groups by that tag, and the test asserts: no injected element exists, the
injected handler never ran, the legend shows the values as literal text, and
the page is served with a Content-Security-Policy that forbids inline script.

Then tests/browser/dashboard_live.mjs opens the query page from a URL hash
(metric, count and p99, grouped by host), sends more events through POST /api
and the test asserts: one chart per aggregation with one legend entry per
group, the count chart grows without a reload (read through the page's
`window.__cairn` hook), the live indicator names the feed in use (WebSocket
/v1/live, or polling when the node has no such endpoint), hovering shows the
values under the cursor, a reload restores the state from the hash, a query
the node refuses shows its code and message in the banner and a bad input is
explained before anything is sent, and the overview page's figures match the
node's `stats` reply. The WebSocket client is checked against /v1/live
frames the browser script plays itself (snapshot, updates replacing and
appending points, a new group, a point older than the range, an error frame,
unsubscribe on a query change, polling after a close and the reconnect).

Against a node that requires tokens (tests/browser/dashboard_auth.mjs): the
page asks for one with the node's reason, a forged token is refused and the
form says so, a token minted by `cairn-cli token` shows the chart with the
live feed on a WebSocket (the token as the `bearer.` subprotocol, never in a
URL), every /api call carries it as a Bearer header, signing out asks again,
and the node's log never contains it.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

EVIL = '<img src=x onerror="window.__pwned=true">'
QUOTED = 'a"b\'c&d<b>bold</b>'


def run_browser(chk, browser_dir, script, argv, what, shots, env=None, shown=2000):
    """Runs one tests/browser script; returns the JSON line it printed last
    (checked for page errors)."""
    p = subprocess.run(["node", os.path.join(browser_dir, script), *argv],
                       capture_output=True, timeout=150, cwd=browser_dir, env=env)
    lines = [ln for ln in p.stdout.decode(errors="replace").splitlines() if ln.startswith("{")]
    chk.require(p.returncode == 0 and lines,
                f"browser run failed ({p.returncode}): {p.stderr.decode(errors='replace')[-2000:]}")
    out = json.loads(lines[-1])
    h.log(f"{what}: {json.dumps(out)[:shown]}")
    h.log(f"screenshots in {shots}")
    chk.check(not out.get("errors"), f"page errors: {out.get('errors')}")
    return out


def check_live(args, chk, node, browser_dir, base=None, env=None):
    now = h.now_ms()
    first = [{"metric": "web.live", "ts": now - 30000 + i * 500, "value": i,
              "tags": {"host": "h1" if i % 2 else "h2"}} for i in range(50)]
    with node.client() as c:
        c.send_lines(first)
        r = c.request({"op": "flush"})
    chk.require(r.get("accepted") == 50, f"flush: {r}")
    shots = os.path.join(node.tmp, "shots")
    os.makedirs(shots, exist_ok=True)
    base = base or f"http://127.0.0.1:{node.http_port}"
    out = run_browser(chk, browser_dir, "dashboard_live.mjs", [base, "web.live", shots],
                      "live page", shots, env=env, shown=3000)
    # The node of this branch may lack /v1/live: its refused handshake is
    # the one console error allowed.
    noise = [m for m in out.get("console", []) if "/v1/live" not in m]
    chk.check(not noise, f"console errors: {noise}")
    chk.check(out.get("aggs_shown") == ["count", "p99"], f"charts: {out.get('aggs_shown')}")
    chk.check(out.get("has_canvas") == 2, f"{out.get('has_canvas')} uPlot canvases, want 2")
    chk.check(out.get("labels") == ["host=h1", "host=h2"], f"legend labels: {out.get('labels')}")
    chk.check(out.get("count_before") == 50, f"count before: {out.get('count_before')}")
    chk.check(out.get("count_after", 0) >= 90, f"count after 40 more events: {out.get('count_after')}")
    chk.check(out.get("not_reloaded") is True, "the page reloaded to show new data")
    mode = out.get("mode")
    chk.check(mode in ("websocket", "polling") and out.get("indicator") == f"live: {mode}",
              f"live mode {mode!r}, indicator {out.get('indicator')!r}")
    hover = out.get("legend_hover", "")
    chk.check("host=h1" in hover and "latest" not in hover and ":" in hover,
              f"hover legend: {hover!r}")
    st = out.get("state_after_reload", {})
    chk.check(st.get("metric") == "web.live" and st.get("aggs") == ["count", "p99"]
              and st.get("group_by") == ["host"] and st.get("step") == "1s"
              and st.get("range") == "5m" and out.get("checked_aggs") == ["count", "p99"],
              f"state after reload: {st}, checked {out.get('checked_aggs')}")
    chk.check(out.get("search_options") == ["web.live"], f"search 'liv': {out.get('search_options')}")
    chk.check(out.get("where_labels") == ["host=h1"] and out.get("where_chips") == ["host=h1"]
              and "where=host=h1" in out.get("where_hash", ""),
              f"where chip: labels {out.get('where_labels')}, chips {out.get('where_chips')}, "
              f"hash {out.get('where_hash')!r}")
    srv = out.get("banner_server", "")
    chk.check("bad_request" in srv and "step" in srv, f"banner for a refused query: {srv!r}")
    inp = out.get("banner_input", "")
    chk.check("bad_input" in inp and "median" in inp and "bad_request" not in inp,
              f"banner for a bad input: {inp!r}")
    chk.check(out.get("banner_cleared") is True, "banner stays after a good query")
    # Overview: the cards against the node's stats (no events since: the
    # browser script took this reply just before reading the cards; the
    # 200 events it sends afterwards are for the rate).
    with node.client() as c:
        stats = c.request({"op": "stats"})
    seen = out.get("stats", {})
    cards = out.get("cards", {})
    chk.check(cards.get("accepted") == f"{seen.get('accepted', -1):,}" and seen.get("accepted") == 110
              and stats["events"]["accepted"] == 310,
              f"accepted card {cards.get('accepted')!r}, stats then {seen}, now {stats['events']}")
    chk.check(cards.get("series") == f"{stats['series']:,}",
              f"series card {cards.get('series')!r}, stats {stats['series']}")
    rate = out.get("rate_card", "")
    chk.check(rate.endswith(" ev/s") and float(rate.split()[0].replace(",", "") or 0) > 0,
              f"ingest rate after 200 events: {rate!r}")
    chk.check(cards.get("status") == stats["status"], f"status card {cards.get('status')!r}")
    chk.check(cards.get("ingest_rate", "").endswith("ev/s"), f"ingest rate {cards.get('ingest_rate')!r}")
    chk.check(out.get("partition_rows") == len(stats["partitions"]),
              f"{out.get('partition_rows')} partition rows, stats has {len(stats['partitions'])}")
    ovr, qt = out.get("overview_reload") or {}, out.get("query_tab") or {}
    chk.check(ovr.get("hash") == "#overview" and ovr.get("shown") is True
              and qt.get("shown") is True and "metric=web.live" in qt.get("hash", "")
              and "aggs=count" in qt.get("hash", ""),
              f"overview reload {ovr}, query tab {qt}")
    # 310 acknowledged ingests by now: the latency card shows p50 / p99.
    chk.check(stats["latency"]["cairn_ack_latency_seconds"]["count"] > 0
              and re.fullmatch(r"[0-9.,]+ / [0-9.,]+ ms", cards.get("ack_latency", "")),
              f"ack latency card {cards.get('ack_latency')!r}, "
              f"stats {stats['latency'].get('cairn_ack_latency_seconds')}")
    mem = sorted(k for k in stats["counters"] if k.startswith("cairn_memory_"))
    chk.check(mem and all(k in out.get("memory_rows", []) for k in mem),
              f"memory rows {out.get('memory_rows')} lack some of {mem}")
    members = out.get("members", [])
    chk.check(len(members) == len(stats["cluster"]["members"]) and members[0].startswith(stats["node"]),
              f"members {members}")
    chk.count(23)
    check_websocket_client(chk, out.get("ws") or {})
    return out


def check_websocket_client(chk, ws):
    """The client side of /v1/live, against frames the browser script sends."""
    t0 = ws.get("t0", 0) / 1000
    sub = ws.get("subscribe") or {}
    q = sub.get("query", {})
    chk.check(sub.get("op") == "subscribe" and sub.get("id")
              and q.get("metric") == "web.live" and q.get("aggs") == ["count", "p99"]
              and q.get("group_by") == ["host"] and q.get("from") == "-5m" and q.get("step") == "1s",
              f"subscribe frame: {sub}")
    chk.check(ws.get("indicator") == "live: websocket", f"indicator: {ws.get('indicator')!r}")
    chk.check(ws.get("snapshot") == [[t0], [5]], f"snapshot data: {ws.get('snapshot')}")
    chk.check(ws.get("after_update") == [[t0, t0 + 1], [7, 3]],
              f"update (replace t0, append t0+1s): {ws.get('after_update')}")
    chk.check(ws.get("labels") == ["host=h1", "host=h2"]
              and ws.get("after_second") == [[t0, t0 + 1, t0 + 2], [7, 3, None], [None, None, 4]],
              f"new group, old point dropped: {ws.get('labels')} {ws.get('after_second')}")
    chk.check("too_many_series" in ws.get("banner", "") and "too many series" in ws.get("banner", ""),
              f"error frame not shown: {ws.get('banner')!r}")
    chk.check(ws.get("unsubscribed") is True and (ws.get("resubscribed") or {}).get("aggs") == ["count"],
              f"query change: unsubscribed {ws.get('unsubscribed')}, resubscribed {ws.get('resubscribed')}")
    chk.check(ws.get("mode_after_close") == "polling" and ws.get("mode_after_reconnect") == "websocket"
              and ws.get("connects", 0) >= 2,
              f"close -> {ws.get('mode_after_close')}, reconnect -> {ws.get('mode_after_reconnect')}, "
              f"{ws.get('connects')} connects")
    chk.count(8)


def check_https(args, chk, browser_dir):
    """The same live scenario over HTTPS and wss:// (cairn.http.tls-*,
    docs/operations.md "TLS"): the page, POST /api and /v1/live all work."""
    certs = tempfile.mkdtemp(prefix="cairn-dash-tls-")
    subprocess.run([os.path.join(args.source_dir, "scripts", "gen-certs.sh"), certs, "1"],
                   check=True, capture_output=True)
    node = h.Node(args.bin_dir, args.source_dir, name="dashtls", keep=args.keep,
                  extra_args=[f"--cairn.http.web-root={os.path.join(args.source_dir, 'web')}",
                              f"--cairn.http.tls-certificate={certs}/n1.pem",
                              f"--cairn.http.tls-key={certs}/n1.key"])
    try:
        node.start()
        node.wait_ready()
        h.log("HTTPS: the live page over https:// and wss://")
        # The live scenario counts the 20 events the first node held before it.
        with node.client() as c:
            c.send_lines([{"metric": "web.pre", "ts": h.now_ms() - 1000 - i, "value": i}
                          for i in range(20)])
            r = c.request({"op": "flush"})
        chk.require(r.get("accepted") == 20, f"flush: {r}")
        env = dict(os.environ, NODE_EXTRA_CA_CERTS=f"{certs}/ca.pem")
        before = len(chk.failures)
        out = check_live(args, chk, node, browser_dir,
                         base=f"https://127.0.0.1:{node.http_port}", env=env)
        chk.check(out.get("mode") == "websocket",
                  f"over HTTPS the live feed is {out.get('mode')!r}, not a wss:// WebSocket")
        if len(chk.failures) > before:
            node.dump_log(60)
        node.stop()
    finally:
        node.cleanup()
        shutil.rmtree(certs, ignore_errors=True)


def check_auth(args, chk, browser_dir):
    tmp = tempfile.mkdtemp(prefix="cairn-dash-auth-")
    secret = os.path.join(tmp, "jwt-secret")
    with open(secret, "w") as f:
        f.write("dashboard-test-secret-0123456789abcdef\n")

    def mint(scopes):
        r = subprocess.run([os.path.join(args.bin_dir, "cairn-cli"), f"--key-file={secret}",
                            "--ttl=10m", "token", "dash-viewer", scopes],
                           capture_output=True, text=True, timeout=15)
        chk.require(r.returncode == 0, f"cairn-cli token: {r.stderr}")
        return r.stdout.strip()

    node = h.Node(args.bin_dir, args.source_dir, name="dashauth", keep=args.keep,
                  extra_args=[f"--cairn.http.web-root={os.path.join(args.source_dir, 'web')}",
                              "--cairn.auth.required=true", f"--cairn.auth.secret-file={secret}"])
    try:
        node.start()
        node.wait_ready()
        h.log("auth: the dashboard against a node that requires tokens")
        now = h.now_ms()
        with node.client() as c:
            chk.require(c.request({"op": "auth", "token": mint("ingest")}).get("ok") is True,
                        "auth with an ingest token")
            c.send_lines([{"metric": "web.auth", "ts": now - 20000 + i * 500, "value": i}
                          for i in range(30)])
            r = c.request({"op": "flush"})
        chk.require(r.get("accepted") == 30, f"flush: {r}")
        token = mint("query")
        shots = os.path.join(node.tmp, "shots")
        os.makedirs(shots, exist_ok=True)
        out = run_browser(chk, browser_dir, "dashboard_auth.mjs",
                          [f"http://127.0.0.1:{node.http_port}", "web.auth", token, shots],
                          "auth page", shots, shown=1500)
        why = out.get("why_first", "")
        chk.check("requires a token" in why and "Bearer" in why
                  and out.get("metrics_without_token") == 0 and out.get("signout_hidden_first")
                  and out.get("status_first") == "sign in",
                  f"without a token: {why!r}, {out.get('metrics_without_token')} metrics listed")
        chk.check("refused" in out.get("why_forged", "") and "signature" in out.get("why_forged", ""),
                  f"forged token: {out.get('why_forged')!r}")
        chk.check(out.get("indicator") == "live: websocket" and out.get("count") == 30
                  and out.get("metrics") == ["web.auth"] and out.get("signin_hidden") is True
                  and out.get("signout_visible") is True and out.get("status") == "ready",
                  f"signed in: indicator {out.get('indicator')!r}, count {out.get('count')}, "
                  f"metrics {out.get('metrics')}")
        chk.check(out.get("bearer_sent") is True, "an /api call went without the Bearer token")
        chk.check(out.get("token_in_url") is False and out.get("ws_url", "").endswith("/v1/live"),
                  f"the token in a URL: {out.get('ws_url')!r}")
        chk.check(out.get("signed_out") is True, "sign out did not ask again")
        node.stop()
        with open(node.log_path, encoding="utf-8", errors="replace") as f:
            chk.check(token not in f.read(), "the token appears in the node's log")
        chk.count(7)
    finally:
        node.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


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
        chk.require(os.path.isfile(os.path.join(args.source_dir, "web", "node_modules", "uplot", "dist",
                                                "uPlot.iife.min.js")),
                    "web/node_modules/uplot missing: run scripts/install-deps.sh (npm ci in web/)")
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
        check_live(args, chk, node, browser_dir)
        check_https(args, chk, browser_dir)
        check_auth(args, chk, browser_dir)
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
