#!/usr/bin/env python3
"""/metrics as an operator reads it (docs/operations.md, "Metrics"), checked
with the Prometheus tools themselves.

A 2-node cluster (m1, m2) with persistence; a real `prometheus` (Debian's)
scrapes both nodes every second. Checked:
  * `promtool check metrics` accepts both nodes' text (no errors, no lint
    findings);
  * the figures are the ones the work produced: events by result on the
    receiving node (acknowledged ingests, one rejected event), ack latency
    and query latency histogram counts, journal sync latency observations,
    per-peer labels (`peer="m2"` on m1: forwarded batches, breaker closed),
    mailbox depth per actor kind, snapshot age per partition, process
    metrics (start time within the run, open files, RSS), build info;
  * Prometheus reads them back through its own query API: the accepted
    count, a histogram_quantile over the ack latency, and, after m2 is
    killed, m1's breaker of peer m2 leaving "closed" (gauge > 0) with
    `cairn_cluster_peer_down_total{peer="m2"}` counted.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402

EVENTS = 400


def scrape(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics",
                                timeout=10) as r:
        return r.headers.get("Content-Type", ""), r.read().decode()


def samples(text):
    """{series: value} of the exposition text, series as written."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"^(\S+(?:\{.*\})?) (\S+)$", line)
        if m:
            out[m.group(1)] = float(m.group(2))
    return out


def promtool_check(chk, text, label):
    tool = shutil.which("promtool")
    chk.require(tool is not None, "promtool not installed")
    r = subprocess.run([tool, "check", "metrics"], input=text,
                       capture_output=True, text=True, timeout=60)
    chk.check(r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(),
              f"promtool check metrics on {label}: rc {r.returncode} "
              f"{(r.stdout + r.stderr).strip()[:600]}")


def prom_query(port, expr):
    url = (f"http://127.0.0.1:{port}/api/v1/query?"
           + urllib.parse.urlencode({"query": expr}))
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
    except OSError:
        return None
    if body.get("status") != "success":
        return None
    return body["data"]["result"]


def wait_prom(port, expr, pred, timeout, prom):
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        if prom.poll() is not None:
            raise h.TestFailure("prometheus exited")
        last = prom_query(port, expr)
        if last and pred(last):
            return last
        time.sleep(0.5)
    return last


def produce(chk, m1):
    """Acknowledged ingests on m1 (some owned by m2), one rejected event,
    queries. Returns the accepted count."""
    t0 = h.now_ms() - 30_000
    accepted = 0
    with m1.client() as c:
        for batch in range(4):
            evs = [{"metric": "mx.lat", "ts": t0 + i,
                    "value": float(i % 50), "tags": {"host": f"h{i % 40}"}}
                   for i in range(batch * 100, batch * 100 + 100)]
            r = c.request({"op": "ingest", "events": evs})
            chk.require(r.get("ok") and r.get("accepted") == 100,
                        f"ingest acknowledged: {r}")
            accepted += r["accepted"]
        r = c.request({"op": "ingest", "events": [{"metric": "", "value": 1}]})
        chk.check(r.get("rejected") == 1, f"the bad event is rejected: {r}")
        for _ in range(3):
            r = c.request({"op": "query", "metric": "mx.lat", "range": "5m",
                           "step": "1m", "aggs": ["count"]})
            chk.check(r.get("ok") and not r.get("partial"),
                      f"query answered completely: {str(r)[:200]}")
    return accepted


def check_text(chk, node, peer, accepted, rejected, started_s):
    ctype, text = scrape(node)
    chk.check(ctype.startswith("text/plain"),
              f"{node.name}: Content-Type {ctype}")
    promtool_check(chk, text, node.name)
    s = samples(text)

    def val(series, default=None):
        return s.get(series, default)

    got_accepted = val('cairn_events_total{result="accepted"}')
    got_rejected = val('cairn_events_total{result="rejected"}')
    chk.check(got_accepted == accepted,
              f"{node.name}: accepted {got_accepted}, want {accepted}")
    chk.check(got_rejected == rejected,
              f"{node.name}: rejected {got_rejected}, want {rejected}")
    if accepted:
        chk.check(val("cairn_ack_latency_seconds_count", 0) >= 4,
                  f"{node.name}: ack latency observed per ingest request")
        chk.check(val('cairn_ack_latency_seconds_bucket{le="+Inf"}')
                  == val("cairn_ack_latency_seconds_count"),
                  f"{node.name}: +Inf bucket equals the count")
        chk.check(val('cairn_query_latency_seconds_count{op="query"}', 0) >= 3,
                  f"{node.name}: query latency observed per query")
        chk.check(val(f'cairn_cluster_forwarded_total{{peer="{peer}"}}', 0) > 0,
                  f"{node.name}: batches forwarded to {peer} counted per peer")
    chk.check(val("cairn_journal_sync_latency_seconds_count", 0) > 0,
              f"{node.name}: journal syncs observed")
    chk.check(val(f'cairn_cluster_breaker_state{{peer="{peer}"}}') == 0,
              f"{node.name}: breaker of {peer} closed (0)")
    chk.check(f'cairn_cluster_hints_pending{{peer="{peer}"}}' in s,
              f"{node.name}: hints pending per peer")
    for kind in ("partition", "parser", "ingestor", "query_coordinator",
                 "peer_link", "live_hub", "node"):
        chk.check(f'cairn_mailbox_depth{{kind="{kind}"}}' in s,
                  f"{node.name}: mailbox depth of kind {kind}")
    chk.check(val('cairn_actor_messages_total{kind="partition"}', 0) > 0,
              f"{node.name}: partition messages counted")
    ages = [v for k, v in s.items() if k.startswith("cairn_snapshot_age_seconds{")]
    chk.check(len(ages) == 8 and all(0 <= a < 600 for a in ages),
              f"{node.name}: snapshot age of each of 8 partitions: {ages}")
    start = val("process_start_time_seconds", 0)
    chk.check(started_s - 5 <= start <= time.time() + 1,
              f"{node.name}: process_start_time_seconds {start} within the run")
    chk.check(val("process_open_fds", 0) > 5 and val("process_max_fds", 0) > 0,
              f"{node.name}: open files {val('process_open_fds')}")
    chk.check(val("process_resident_memory_bytes", 0) > 1 << 20,
              f"{node.name}: RSS {val('process_resident_memory_bytes')}")
    chk.check(val("process_cpu_seconds_total", -1) >= 0,
              f"{node.name}: CPU seconds")
    info = [k for k in s if k.startswith("cairn_build_info{")]
    chk.check(len(info) == 1 and 'version="' in info[0] and s[info[0]] == 1,
              f"{node.name}: build info {info}")
    chk.check(val("cairn_series", -1) >= 0 and
              any(k.startswith('cairn_memory_sealed_buckets{tier="1s"}') for k in s),
              f"{node.name}: series and bucket counts")


def run(cluster, chk, tmp):
    m1, m2 = cluster.nodes
    started_s = time.time() - 120  # the nodes started before this function
    prom, prom_port = h.start_prometheus(tmp, f"""
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: cairn
    static_configs:
      - targets: ['127.0.0.1:{m1.http_port}', '127.0.0.1:{m2.http_port}']
""")
    try:
        accepted = produce(chk, m1)
        check_text(chk, m1, "m2", accepted, 1, started_s)
        check_text(chk, m2, "m1", 0, 0, started_s)

        inst1 = f"127.0.0.1:{m1.http_port}"
        got = wait_prom(prom_port,
                        f'cairn_events_total{{result="accepted",instance="{inst1}"}}',
                        lambda r: float(r[0]["value"][1]) == accepted, 60, prom)
        chk.check(got and float(got[0]["value"][1]) == accepted,
                  f"Prometheus reads m1's accepted count back: {got}")
        got = wait_prom(prom_port,
                        f'histogram_quantile(0.99, cairn_ack_latency_seconds_bucket'
                        f'{{instance="{inst1}"}})',
                        lambda r: 0 < float(r[0]["value"][1]) <= 10, 30, prom)
        chk.check(got and 0 < float(got[0]["value"][1]) <= 10,
                  f"Prometheus' histogram_quantile over the ack latency: {got}")
        got = wait_prom(prom_port, 'up{job="cairn"}',
                        lambda r: len(r) == 2 and all(x["value"][1] == "1" for x in r),
                        30, prom)
        chk.check(got and len(got) == 2, f"both nodes scraped: {got}")

        m2.kill()
        got = wait_prom(prom_port,
                        f'cairn_cluster_breaker_state{{peer="m2",instance="{inst1}"}} > 0',
                        lambda r: len(r) == 1, 60, prom)
        chk.check(got and len(got) == 1,
                  f"Prometheus sees m1's breaker of m2 leave closed: {got}")
        got = wait_prom(prom_port,
                        f'cairn_cluster_peer_down_total{{peer="m2",instance="{inst1}"}}',
                        lambda r: float(r[0]["value"][1]) >= 1, 30, prom)
        chk.check(got and float(got[0]["value"][1]) >= 1,
                  f"peer down counted for m2: {got}")
        _, text = scrape(m1)
        promtool_check(chk, text, "m1 with its peer down")
    finally:
        h.stop_process(prom)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_metrics")
    cluster = Cluster(args, n=2, partitions=8, prefix="m")
    tmp = tempfile.mkdtemp(prefix="cairn-it-metrics-")
    try:
        cluster.start()
        run(cluster, chk, tmp)
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
