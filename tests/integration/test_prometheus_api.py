#!/usr/bin/env python3
"""The Prometheus HTTP API of a Cairn node against a real Prometheus.

The same deterministic samples go to a cairn-node (NDJSON `ingest` with
explicit ts) and to Debian's Prometheus 2.42 (an OpenMetrics file turned into
TSDB blocks by `promtool tsdb create-blocks-from openmetrics`, then
`prometheus --storage.tsdb.path=<dir>` on a free loopback port). Every
supported expression is run with `promtool query range` / `promtool query
instant` (-o json) against both servers and the answers are compared:

  * label sets and timestamps: identical;
  * count_over_time, min/max_over_time, last_over_time, instant selectors,
    count/min/max aggregations: exactly equal;
  * sums, averages, rate, increase: relative 1e-9 (summation order);
  * quantile_over_time: relative 0.011 (the DDSketch's 1 % plus rounding);
    quantiles are chosen so that Prometheus's interpolated rank is an
    integer (phi * (n - 1) whole), where it equals Cairn's lower rank.

The alignment rule (docs/prometheus-api.md): Cairn's window at t is the
buckets with start in [t-d, t), Prometheus 2.42's the samples in [t-d, t].
Samples sit at x.5 s, evaluation times and ranges are whole seconds, so both
see the same samples. Unsupported expressions must give HTTP 400 bad_data
naming the unsupported part. Skipped (exit 0 with a note) only if promtool
or prometheus is not installed.
"""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402

GAUGE = "cairn_test_gauge"
COUNTER = "cairn_test_requests_total"
INTERVAL = 10        # seconds between samples of a series
SPAN = 20 * 60       # seconds of data
OFFSET_MS = 500      # samples at x.5 s: never on a window boundary

EXACT, SUM_TOL, Q_TOL = 0.0, 1e-9, 0.011


def gauge_value(s, k):
    """Values over 5 decades (1 .. 100000), deterministic."""
    return round(10 ** (((k * 7919 + s * 104729) % 1000) / 200.0), 3)


def counter_value(s, k):
    """A counter with increments 1..20; series 2 resets to 100 at k = 70."""
    if s == 2 and k >= 70:
        base, k0 = 100.0, 70
    else:
        base, k0 = 10000.0 * (s + 1), 0
    return base + sum(1 + (j * 31 + s * 17) % 20 for j in range(k0, k))


def make_samples(t0_ms):
    """[(metric, labels, ts_ms, value)] for every series."""
    out = []
    n = SPAN // INTERVAL
    gauges = [{"job": j, "instance": i} for j in ("api", "db") for i in ("a", "b", "c")]
    for s, labels in enumerate(gauges):
        for k in range(n):
            out.append((GAUGE, labels, t0_ms + k * INTERVAL * 1000 + OFFSET_MS,
                        gauge_value(s, k)))
    counters = [{"job": "api", "code": c} for c in ("200", "404", "500")]
    for s, labels in enumerate(counters):
        for k in range(n):
            out.append((COUNTER, labels, t0_ms + k * INTERVAL * 1000 + OFFSET_MS,
                        counter_value(s, k)))
    return out


def write_openmetrics(samples, path):
    families = {}
    for metric, labels, ts, v in samples:
        families.setdefault(metric, []).append((labels, ts, v))
    with open(path, "w") as f:
        for metric, rows in families.items():
            kind = "counter" if metric == COUNTER else "gauge"
            name = metric[:-len("_total")] if kind == "counter" else metric
            f.write(f"# TYPE {name} {kind}\n")
            rows.sort(key=lambda r: (sorted(r[0].items()), r[1]))
            for labels, ts, v in rows:
                ls = ",".join(f'{k}="{val}"' for k, val in sorted(labels.items()))
                f.write(f"{metric}{{{ls}}} {v!r} {ts / 1000:.3f}\n")
        f.write("# EOF\n")


def wait_http(url, timeout=60.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.2)
    return False


def promtool(args, timeout=60):
    p = subprocess.run(["promtool"] + args, capture_output=True, text=True,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def query(server, kind, expr, params):
    args = ["query", kind, "-o", "json"]
    for k, v in params.items():
        args.append(f"--{k}={v}")
    rc, out, err = promtool(args + [server, expr])
    if rc != 0:
        return None, (err or out).strip()
    try:
        return json.loads(out), None
    except ValueError as e:
        return None, f"not JSON: {e}: {out[:200]!r}"


def key_of(metric):
    return tuple(sorted(metric.items()))


def close(a, b, tol):
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    if tol == EXACT:
        return a == b
    return abs(a - b) <= tol * max(abs(a), abs(b), 1e-12)


def compare(chk, name, prom, cairn, tol, matrix_ts_slack=0.0):
    """Compares promtool -o json outputs (vector or matrix lists)."""
    def is_scalar(v):
        return not isinstance(v, list) or (v and not isinstance(v[0], dict))
    if is_scalar(prom) or is_scalar(cairn):
        # scalars: [t, "v"]
        chk.check(prom == cairn, f"{name}: scalar {cairn} != {prom}")
        chk.count()
        return
    p = {key_of(s["metric"]): s for s in prom}
    c = {key_of(s["metric"]): s for s in cairn}
    chk.check(set(p) == set(c),
              f"{name}: series differ: only Prometheus {sorted(set(p) - set(c))[:3]}, "
              f"only Cairn {sorted(set(c) - set(p))[:3]}")
    chk.check(len(p) > 0, f"{name}: Prometheus returned no series (test data?)")
    for k in set(p) & set(c):
        pv = p[k].get("values") or [p[k]["value"]]
        cv = c[k].get("values") or [c[k]["value"]]
        if not chk.check(len(pv) == len(cv),
                         f"{name} {k}: {len(cv)} points, Prometheus {len(pv)}"):
            continue
        for (pt, pval), (ct, cval) in zip(pv, cv):
            chk.check(abs(float(pt) - float(ct)) <= matrix_ts_slack,
                      f"{name} {k}: time {ct} != {pt}")
            chk.check(close(float(pval), float(cval), tol),
                      f"{name} {k} @{pt}: Cairn {cval} != Prometheus {pval}"
                      + ("" if tol == EXACT else f" (tol {tol})"))
            chk.count()




def main():
    args = H.parse_args(__doc__)
    chk = H.Checker("prometheus_api")
    if not shutil.which("promtool") or not shutil.which("prometheus"):
        chk.note("promtool/prometheus not installed (Debian package prometheus): skipped")
        chk.check(True, "skipped")
        return chk.summary()

    now = int(time.time())
    # Data: 20 minutes ending ~1 minute ago, starting on a whole minute.
    t0 = (now - SPAN - 90) // 60 * 60
    samples = make_samples(t0 * 1000)
    tmp = tempfile.mkdtemp(prefix="cairn-it-prom-")
    prom = None
    try:
        om = os.path.join(tmp, "data.om")
        write_openmetrics(samples, om)
        tsdb = os.path.join(tmp, "tsdb")
        rc, out, err = promtool(["tsdb", "create-blocks-from", "openmetrics", om, tsdb],
                                timeout=120)
        chk.require(rc == 0, f"promtool create-blocks-from failed: {err or out}")
        prom, prom_port = H.start_prometheus(
            tmp, "global:\n  scrape_interval: 1h\n", tsdb=tsdb,
            extra_args=["--storage.tsdb.retention.time=30d"])

        node = H.Node(args.bin_dir, args.source_dir, name="prom",
                      extra_args=['--cairn.tiers=["1s:1h","1m:2d","1h:90d"]',
                                  "--cairn.storage.enabled=false"])
        with node:
            with node.client() as c:
                events = [{"metric": m, "tags": l, "ts": ts, "value": v}
                          for m, l, ts, v in samples]
                for i in range(0, len(events), 2000):
                    r = c.request({"op": "ingest", "events": events[i:i + 2000]})
                    chk.require(r.get("ok") and r.get("rejected") == 0,
                                f"ingest failed: {json.dumps(r)[:300]}")
            chk.require(wait_http(f"http://127.0.0.1:{prom_port}/-/ready"),
                        "prometheus did not become ready: "
                        + open(os.path.join(tmp, "prometheus.log")).read()[-2000:])
            cairn_url = f"http://127.0.0.1:{node.http_port}"
            prom_url = f"http://127.0.0.1:{prom_port}"
            run_comparisons(chk, t0, cairn_url, prom_url)
            run_errors(chk, node.http_port, t0)
            # The comparisons above were answered by the inline reads (no
            # request to the coordinator, docs/prometheus-api.md "Latency")
            # wherever the node could, so they checked that path too.
            text = urllib.request.urlopen(f"{cairn_url}/metrics", timeout=10).read().decode()
            inline = [float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith('cairn_prometheus_inline_reads_total{result="done"}')]
            chk.check(inline and inline[0] >= 20,
                      f"inline reads served: {inline} (cairn_prometheus_inline_reads_total)")
    finally:
        H.stop_process(prom, timeout=10)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return chk.summary()


def run_comparisons(chk, t0, cairn_url, prom_url):
    g, cnt = GAUGE, COUNTER
    start, end = t0 + 6 * 60, t0 + 19 * 60   # whole minutes inside the data
    rng = {"start": start, "end": end, "step": "60s"}
    rng30 = {"start": start, "end": end, "step": "30s"}
    ranged = [
        (f"{g}", rng, EXACT),
        (f'{g}{{job="api"}}', rng30, EXACT),
        (f'{g}{{instance!="b"}}', rng, EXACT),
        (f'{g}{{instance=~"a|c",job!~"d.*"}}', rng, EXACT),
        (f"count_over_time({g}[1m])", rng, EXACT),
        (f"count_over_time({g}[2m])", rng30, EXACT),
        (f"min_over_time({g}[1m])", rng, EXACT),
        (f"max_over_time({g}[2m])", rng, EXACT),
        (f"last_over_time({g}[1m])", rng30, EXACT),
        (f"sum_over_time({g}[1m])", rng, SUM_TOL),
        (f"sum_over_time({g}[5m])", rng30, SUM_TOL),
        (f"avg_over_time({g}[1m])", rng, SUM_TOL),
        (f"quantile_over_time(0.2, {g}[1m])", rng, Q_TOL),
        (f"quantile_over_time(0.6, {g}[1m])", rng, Q_TOL),
        (f"quantile_over_time(0.8, {g}[1m])", rng, Q_TOL),
        (f"quantile_over_time(1, {g}[1m])", rng, Q_TOL),
        (f"rate({cnt}[1m])", rng, SUM_TOL),
        (f"rate({cnt}[5m])", rng30, SUM_TOL),
        (f"increase({cnt}[2m])", rng, SUM_TOL),
        (f"sum by (job) (rate({cnt}[5m]))", rng, SUM_TOL),
        (f"sum(sum_over_time({g}[1m]))", rng, SUM_TOL),
        (f"avg by (instance) (avg_over_time({g}[1m]))", rng, SUM_TOL),
        (f"max by (job) ({g})", rng, EXACT),
        (f"min without (instance) (min_over_time({g}[1m]))", rng, EXACT),
        (f"count by (job) ({g})", rng, EXACT),
    ]
    for expr, params, tol in ranged:
        p, perr = query(prom_url, "range", expr, params)
        c, cerr = query(cairn_url, "range", expr, params)
        if not chk.check(p is not None, f"range {expr}: Prometheus failed: {perr}"):
            continue
        if not chk.check(c is not None, f"range {expr}: Cairn failed: {cerr}"):
            continue
        compare(chk, f"range {expr} step {params['step']}", p, c, tol)

    at = {"time": t0 + 12 * 60}
    instant = [
        (f"{g}", EXACT),
        (f"count_over_time({g}[5m])", EXACT),
        (f"max_over_time({g}[3m])", EXACT),
        (f"avg_over_time({g}[2m])", SUM_TOL),
        (f"quantile_over_time(0.5, {g}[110s])", Q_TOL),   # 11 samples: rank 5
        (f"quantile_over_time(0, {g}[1m])", Q_TOL),
        (f"rate({cnt}[3m])", SUM_TOL),
        (f"increase({cnt}[10m])", SUM_TOL),               # across the reset
        (f"sum by (job) (last_over_time({g}[1m]))", SUM_TOL),
        ("1+1", EXACT),
    ]
    for expr, tol in instant:
        p, perr = query(prom_url, "instant", expr, at)
        c, cerr = query(cairn_url, "instant", expr, at)
        if not chk.check(p is not None, f"instant {expr}: Prometheus failed: {perr}"):
            continue
        if not chk.check(c is not None, f"instant {expr}: Cairn failed: {cerr}"):
            continue
        compare(chk, f"instant {expr}", p, c, tol)
    # A range selector: Cairn stamps each sample with its bucket's start
    # (the sample's time rounded down to the 1 s resolution).
    p, _ = query(prom_url, "instant", f'{g}{{job="db"}}[1m]', at)
    c, cerr = query(cairn_url, "instant", f'{g}{{job="db"}}[1m]', at)
    if chk.check(c is not None and p is not None, f"matrix selector: {cerr}"):
        compare(chk, "instant range selector", p, c, EXACT, matrix_ts_slack=1.0)


def run_errors(chk, port, t0):
    t = t0 + 12 * 60
    for expr, part in [
        (f"histogram_quantile(0.9, rate({COUNTER}[5m]))", "unsupported function: histogram_quantile"),
        (f"{GAUGE} + 1", "unsupported operator: +"),
        (f"topk(2, {GAUGE})", "unsupported aggregation: topk"),
        (f"{GAUGE} offset 1m", "unsupported modifier: offset"),
        (f"rate({COUNTER}[5m:1m])", "unsupported subquery"),
        ("sum(", "parse error"),
    ]:
        st, body = H.http_get_json(port, "/api/v1/query", {"query": expr, "time": t})
        chk.check(st == 400 and body.get("status") == "error"
                  and body.get("errorType") == "bad_data"
                  and part in body.get("error", ""),
                  f"{expr}: want 400 bad_data naming {part!r}, got {st} {body}")
    # promtool shows the error and fails.
    rc, out, err = promtool(["query", "instant", f"http://127.0.0.1:{port}",
                             f"{GAUGE} + 1"])
    chk.check(rc != 0 and "unsupported operator" in (out + err),
              f"promtool on an unsupported expression: rc {rc}, {out}{err}")
    # GET with RFC 3339 times and a duration step gives what the float form gives.
    import datetime
    def rfc(sec):
        return datetime.datetime.fromtimestamp(sec, datetime.timezone.utc).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
    q = f'max_over_time({GAUGE}{{job="api",instance=~"a|b"}}[1m])'
    st1, b1 = H.http_get_json(port, "/api/v1/query_range",
                       {"query": q, "start": rfc(t - 300), "end": rfc(t), "step": "1m"})
    st2, b2 = H.http_get_json(port, "/api/v1/query_range",
                       {"query": q, "start": t - 300, "end": t, "step": 60})
    chk.check(st1 == 200 and b1 == b2 and len(b1["data"]["result"]) == 2
              and all(len(x["values"]) == 6 for x in b1["data"]["result"]),
              f"RFC 3339 GET: {st1} {str(b1)[:300]} vs {str(b2)[:300]}")
    st, body = H.http_get_json(port, "/api/v1/query_range",
                        {"query": q, "start": t - 300, "end": t, "step": "0"})
    chk.check(st == 400 and body.get("errorType") == "bad_data", f"step 0: {st} {body}")
    # A label value that is not UTF-8 (bytes a client may send): an answer,
    # not a hung request or a 500.
    for path, extra in [("/api/v1/query", {"time": t}),
                        ("/api/v1/query_range", {"start": t - 300, "end": t, "step": 60}),
                        ("/api/v1/series", None)]:
        key = "match[]" if extra is None else "query"
        params = dict(extra or {}, **{key: f'{GAUGE}{{job="\xff\xfe"}}'.encode("latin-1")})
        try:
            st, body = H.http_get_json(port, path, params, timeout=10)
        except OSError as e:
            st, body = None, {"error": repr(e)}
        chk.check(st == 200 and body.get("status") == "success" and body["data"] in ([], {
                      "resultType": body["data"].get("resultType") if isinstance(body["data"], dict)
                      else None, "result": []}),
                  f"{path} with a non-UTF-8 label value: {st} {body}")
    st, body = H.http_get_json(port, "/api/v1/nothing", {})
    chk.check(st == 404 and body.get("errorType") == "not_found", f"404: {st} {body}")
    # Metadata endpoints.
    st, body = H.http_get_json(port, "/api/v1/labels", {})
    chk.check(st == 200 and body["data"] == ["__name__", "code", "instance", "job"],
              f"labels: {st} {body}")
    st, body = H.http_get_json(port, "/api/v1/label/__name__/values", {})
    chk.check(st == 200 and body["data"] == [GAUGE, COUNTER] or
              body["data"] == sorted([GAUGE, COUNTER]), f"names: {st} {body}")
    st, body = H.http_get_json(port, "/api/v1/label/instance/values",
                        {"match[]": f'{GAUGE}{{job="api"}}'})
    chk.check(st == 200 and body["data"] == ["a", "b", "c"], f"values: {st} {body}")
    st, body = H.http_get_json(port, "/api/v1/series",
                        {"match[]": [f'{COUNTER}{{code=~"[45]0."}}']})
    chk.check(st == 200 and [s["code"] for s in body["data"]] == ["404", "500"]
              and all(s["__name__"] == COUNTER for s in body["data"]),
              f"series: {st} {body}")
    st, body = H.http_get_json(port, "/api/v1/status/buildinfo", {})
    chk.check(st == 200 and body["data"]["revision"].startswith("cairn-"),
              f"buildinfo: {st} {body}")


if __name__ == "__main__":
    sys.exit(main())
