#!/usr/bin/env python3
"""Prometheus remote_write into a real node, sent by Debian's real
`prometheus` binary (docs/integrations.md, "Prometheus remote_write").

Prometheus runs with a temporary config and TSDB directory on free ports,
scrapes itself and the node's /metrics every second and remote-writes to
the node's POST /api/v1/write. Checked:
  * `up` arrives for both jobs with the labels as tags (job, instance) and
    only the value 1; `prometheus_build_info` carries the version that
    `prometheus --version` prints, value 1;
  * a counter (prometheus_http_requests_total{handler="/metrics"}, which the
    self-scrape increments) arrives as raw, non-decreasing values, and the
    node's own cairn_events_total{result="accepted"} comes back through Prometheus
    with a value > 0;
  * sample timestamps lie between the start of Prometheus and now;
  * Prometheus itself counts no failed samples and no non-retryable errors
    (prometheus_remote_storage_samples_failed_total == 0) and has sent some
    (samples_total > 0);
  * bodies Prometheus would never send: not snappy -> 400 bad_request;
    wrong Content-Encoding -> 415; GET -> 405.
Before Prometheus starts, bodies built byte by byte here (protobuf with the
prompb field numbers, snappy literals): a mix of valid and invalid samples
-> 204, the valid ones (a recording-rule name with ':', a counter) query
back exactly, the stale marker is skipped; only invalid samples -> 400
listing the reasons; cairn_remote_write_rejected_total and the log count
them.
A node with tokens and an events/s limit charges remote_write samples to
the writer: a request past the rate is refused whole with 429, Retry-After
and `rate_limited` (nothing of it stored), and passes again once the rate
allows.
Prometheus is killed at the end whatever happens.
"""

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def http(method, url, body=None, headers=None, timeout=30):
    req = urllib.request.Request(url, data=body, method=method,
                                 headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def series(c, metric):
    r = c.request({"op": "series", "metric": metric})
    return r.get("series", []) if r.get("ok") else []


def points(c, metric, where, frm, to, step="1s"):
    r = c.request({"op": "query", "metric": metric, "from": frm, "to": to,
                   "step": step, "aggs": ["count", "min", "max", "last"],
                   "where": where})
    if not r.get("ok"):
        raise h.TestFailure(f"query {metric} {where}: {r}")
    pts = []
    for s in r["series"]:
        pts += [p for p in s["points"] if p.get("count", 0) > 0]
    return sorted(pts, key=lambda p: p["t"])


def prom_metric(text, name, labels=""):
    m = re.search(r"^" + re.escape(name) + (r"\{[^}]*" + labels + r"[^}]*\}" if labels else r"(\{[^}]*\})?")
                  + r" ([0-9.e+-]+)$", text, re.M)
    return float(m.group(m.lastindex)) if m else None


# -- hand-built bodies: protobuf and snappy written byte by byte ----------------

def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def pb_bytes(field, data):
    return varint(field << 3 | 2) + varint(len(data)) + data


def write_request(series):
    """prometheus.WriteRequest: [(labels dict, [(value, ts_ms)])], field
    numbers of prompb (TimeSeries 1, Label 1/2, Sample 1 double/2 int64)."""
    body = b""
    for labels, samples in series:
        ts = b""
        for k, v in labels.items():
            ts += pb_bytes(1, pb_bytes(1, k.encode()) + pb_bytes(2, v.encode()))
        for value, t in samples:
            sample = varint(1 << 3 | 1) + struct.pack("<d", value)
            sample += varint(2 << 3 | 0) + varint(t & (2**64 - 1))
            ts += pb_bytes(2, sample)
        body += pb_bytes(1, ts)
    return body


def snappy_literal(data):
    """The snappy block format with literals only (valid, uncompressed)."""
    out = bytearray(varint(len(data)))
    for i in range(0, len(data), 65536):
        piece = data[i:i + 65536]
        out.append(61 << 2)  # literal, length-1 in the next two bytes
        out += struct.pack("<H", len(piece) - 1)
        out += piece
    return bytes(out)


def hand_built_phase(node, chk):
    url = f"http://127.0.0.1:{node.http_port}/api/v1/write"
    hdr = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
           "X-Prometheus-Remote-Write-Version": "0.1.0"}
    base = (h.now_ms() - 120_000) // 60_000 * 60_000
    stale = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
    good = [({"__name__": "job:reqs:rate5m", "job": "api", "instance": "a:1"},
             [(1.5, base + 1000), (2.5, base + 2000), (stale, base + 3000)]),
            ({"__name__": "hb_total", "job": "api"},
             [(10.0, base + 1000), (12.0, base + 2000), (15.0, base + 3000)])]
    bad = [({"job": "no name"}, [(1.0, base)]),
           ({"__name__": "hb_total", "job": "nan"}, [(float("nan"), base)])]
    status, text = http("POST", url, snappy_literal(write_request(good + bad)), hdr)
    chk.check(status == 204 and text == "",
              f"hand-built body with some invalid samples: {status} {text}")
    status, text = http("POST", url, snappy_literal(write_request(bad)), hdr)
    body = json.loads(text) if text.startswith("{") else {}
    chk.check(status == 400 and body.get("rejected") == 2
              and body.get("accepted") == 0
              and body.get("error", {}).get("code") == "invalid_event"
              and len(body.get("errors", [])) == 2,
              f"only invalid samples -> 400 with reasons: {status} {text}")
    status, text = http("POST", url, snappy_literal(b""), hdr)
    chk.check(status == 204, f"empty WriteRequest: {status} {text}")
    with node.client() as c:
        for metric, where, want in (
                ("job:reqs:rate5m", {"job": "api"}, [1.5, 2.5]),
                ("hb_total", {"job": "api"}, [10.0, 12.0, 15.0])):
            pts = points(c, metric, where, base, base + 60_000)
            chk.check([p["last"] for p in pts] == want
                      and [p["t"] for p in pts] == [base + 1000 * (i + 1)
                                                    for i in range(len(want))],
                      f"{metric}: {pts}, want {want} at base+1s..")
            chk.count(len(want))
        chk.check(series(c, "hb_total") == [{"metric": "hb_total",
                                             "tags": {"job": "api"}}],
                  f"the NaN series stored nothing: {series(c, 'hb_total')}")
    _, metrics = http("GET", f"http://127.0.0.1:{node.http_port}/metrics")
    chk.check(prom_metric(metrics, "cairn_remote_write_rejected_total") == 4,
              "cairn_remote_write_rejected_total counts the 4 invalid samples")
    chk.check("remote_write: 2 of 8 samples not stored" in node.log_text(),
              "the log names the rejected samples")


def rate_limited_phase(args, chk, tmp):
    secret = os.path.join(tmp, "jwt-secret")
    with open(secret, "w") as f:
        f.write("remote-write-test-secret-0123456789abcdef\n")
    r = subprocess.run([os.path.join(args.bin_dir, "cairn-cli"), f"--key-file={secret}",
                        "token", "prom-writer", "ingest,query"],
                       capture_output=True, text=True, timeout=15)
    chk.require(r.returncode == 0, f"cairn-cli token: {r.stderr}")
    token = r.stdout.strip()
    node = h.Node(args.bin_dir, args.source_dir, name="promrw-rate", keep=args.keep,
                  extra_args=["--cairn.auth.required=true", f"--cairn.auth.secret-file={secret}",
                              "--cairn.rate.events-per-sec=100"])
    with node:
        url = f"http://127.0.0.1:{node.http_port}/api/v1/write"
        hdr = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf",
               "X-Prometheus-Remote-Write-Version": "0.1.0",
               "Authorization": f"Bearer {token}"}
        t0 = h.now_ms() - 60_000

        def body(first):
            return snappy_literal(write_request(
                [({"__name__": "rw_rate", "job": "x"},
                  [(float(i), t0 + i * 10) for i in range(first, first + 150)])]))

        # 150 samples on a full bucket of 100 pass (and leave a debt) ...
        status, text = http("POST", url, body(0), hdr)
        chk.check(status == 204, f"first 150 samples: {status} {text}")
        # ... so the next request is refused whole, with when to retry.
        req = urllib.request.Request(url, data=body(150), method="POST", headers=hdr)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, text, retry = resp.status, resp.read().decode(), None
        except urllib.error.HTTPError as e:
            status, text, retry = e.code, e.read().decode(), e.headers.get("Retry-After")
        err = json.loads(text).get("error", {}) if text.startswith("{") else {}
        chk.check(status == 429 and err.get("code") == "rate_limited"
                  and err.get("retry_after_ms", 0) > 0 and retry and retry.isdigit(),
                  f"second request past the rate: {status} {text} Retry-After {retry}")
        time.sleep(max(2.5, int(retry or 0)))
        status, text = http("POST", url, body(150), hdr)
        chk.check(status == 204, f"the same request after Retry-After: {status} {text}")
        with node.client() as c:
            c.request({"op": "auth", "token": token})
            got = c.request({"op": "query", "metric": "rw_rate", "from": t0 - 1000,
                             "to": t0 + 10_000, "aggs": ["count"]})
            stats = c.request({"op": "stats"})
        total = sum(p.get("count", 0) for s in got.get("series", []) for p in s.get("points", []))
        chk.check(total == 300, f"stored samples: {total}, want 300 (150 + the retried 150)")
        mine = [p for p in stats.get("auth", {}).get("principals", [])
                if p.get("principal") == "prom-writer"]
        chk.check(mine and mine[0].get("events") == 300 and mine[0].get("events_limited") == 150,
                  f"principal counters: {mine}")
    h.log("remote_write past the events/s rate: 429 + Retry-After, stored after the retry")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_remote_write")
    binary = shutil.which("prometheus")
    chk.require(binary is not None,
                "prometheus not installed (scripts/install-deps.sh installs it)")
    version_text = subprocess.run([binary, "--version"], capture_output=True,
                                  text=True, timeout=30)
    vm = re.search(r"version (\S+)", version_text.stdout + version_text.stderr)
    chk.require(vm is not None, f"prometheus --version: {version_text}")
    version = vm.group(1)
    node = h.Node(args.bin_dir, args.source_dir, name="promrw", keep=args.keep)
    tmp = tempfile.mkdtemp(prefix="cairn-it-prometheus-")
    prom = None
    prom_log = os.path.join(tmp, "prometheus.log")
    try:
        rate_limited_phase(args, chk, tmp)
        with node:
            hand_built_phase(node, chk)
            prom_port = h.free_port()
            config = f"""
global:
  scrape_interval: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: prom
    static_configs:
      - targets: ['127.0.0.1:{prom_port}']
  - job_name: cairn
    static_configs:
      - targets: ['127.0.0.1:{node.http_port}']
remote_write:
  - url: http://127.0.0.1:{node.http_port}/api/v1/write
    queue_config:
      batch_send_deadline: 1s
      min_backoff: 100ms
"""
            started = h.now_ms()
            prom, _ = h.start_prometheus(tmp, config, port=prom_port)
            with node.client() as c:
                # Wait for both jobs' `up` and a few seconds of samples.
                deadline = time.time() + 90
                jobs = set()
                while time.time() < deadline:
                    jobs = {s["tags"].get("job") for s in series(c, "up")}
                    if jobs >= {"prom", "cairn"}:
                        ups = points(c, "up", {"job": "prom"}, started - 1000,
                                     h.now_ms() + 1000)
                        if len(ups) >= 4:
                            break
                    chk.require(prom.poll() is None, "prometheus exited")
                    time.sleep(0.5)
                chk.require(jobs >= {"prom", "cairn"},
                            f"`up` of both jobs arrived (got {jobs})")
                now = h.now_ms() + 1000
                for s in series(c, "up"):
                    t = s["tags"]
                    want = prom_port if t.get("job") == "prom" else node.http_port
                    chk.check(t.get("instance") == f"127.0.0.1:{want}",
                              f"up tags: {t}")
                for job in ("prom", "cairn"):
                    pts = points(c, "up", {"job": job}, started - 1000, now)
                    chk.check(len(pts) >= 2 and all(p["min"] == 1 and p["max"] == 1
                                                    for p in pts),
                              f"up{{job={job}}} is 1 at every point: {pts[:5]}")
                    chk.check(all(started - 1000 <= p["t"] <= now for p in pts),
                              f"up{{job={job}}} timestamps within the run")
                    chk.count(len(pts))
                info = series(c, "prometheus_build_info")
                chk.check(len(info) == 1 and info[0]["tags"].get("version") == version,
                          f"prometheus_build_info version {version}: {info}")
                pts = points(c, "prometheus_build_info", {"job": "prom"},
                             started - 1000, now)
                chk.check(pts and all(p["min"] == 1 == p["max"] for p in pts),
                          f"prometheus_build_info value 1: {pts[:3]}")
                # A counter: raw values, never decreasing, growing with scrapes.
                where = {"job": "prom", "handler": "/metrics", "code": "200"}
                cnt = points(c, "prometheus_http_requests_total", where,
                             started - 1000, now)
                lasts = [p["last"] for p in cnt]
                chk.check(len(lasts) >= 2 and lasts == sorted(lasts)
                          and lasts[-1] > lasts[0] and lasts[0] >= 1,
                          f"prometheus_http_requests_total{where} raw and rising: "
                          f"{lasts[:20]}")
                chk.count(len(lasts))
                own = points(c, "cairn_events_total",
                             {"job": "cairn", "result": "accepted"},
                             started - 1000, now)
                chk.check(own and own[-1]["last"] > 0,
                          f"cairn_events_total{{result=accepted}} via Prometheus: {own[-3:]}")
            # Prometheus' own view: nothing failed, something sent.
            status, text = http("GET", f"http://127.0.0.1:{prom_port}/metrics")
            failed = prom_metric(text, "prometheus_remote_storage_samples_failed_total")
            sent = prom_metric(text, "prometheus_remote_storage_samples_total")
            chk.check(status == 200 and failed == 0,
                      f"prometheus_remote_storage_samples_failed_total: {failed}")
            chk.check(sent is not None and sent > 0,
                      f"prometheus_remote_storage_samples_total: {sent}")
            url = f"http://127.0.0.1:{node.http_port}/api/v1/write"
            status, body = http("POST", url, b"not snappy",
                                {"Content-Encoding": "snappy",
                                 "Content-Type": "application/x-protobuf"})
            chk.check(status == 400 and json.loads(body)["error"]["code"] == "bad_request",
                      f"undecodable body: {status} {body}")
            status, body = http("POST", url, b"x", {"Content-Encoding": "gzip"})
            chk.check(status == 415, f"gzip body: {status} {body}")
            status, body = http("GET", url)
            chk.check(status == 405, f"GET: {status} {body}")
            h.stop_process(prom, timeout=30)
            prom = None
            node.stop()
    except h.TestFailure as e:
        chk.check(False, str(e))
        node.dump_log()
    finally:
        h.stop_process(prom, timeout=1)
        if chk.failures and os.path.exists(prom_log):
            with open(prom_log, errors="replace") as f:
                h.log("--- prometheus log (tail) ---\n" + "".join(f.readlines()[-40:]))
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
