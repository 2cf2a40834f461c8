#!/usr/bin/env python3
"""Ingest with and without 10,000 alert rules (issue 12's target: < 10 %
ingest throughput loss at 100k events/s; docs/benchmarks.md, "Alerting").
Not a ctest.

For each case (no rules, then RULES rules) a fresh durable node
(sync=always) is started and, once the rules are created, fed by cairn-bench
in two phases:

  fixed  --rate R (100,000 ev/s) for --duration s, --flush-every so that the
         ack latency is measured: the node's CPU (utime+stime from /proc) per
         second of wall time, the rate it accepted and the flush latency.
  max    --rate 0 (as fast as the node takes them) for --duration s: the
         throughput ceiling.

Events: cairn-bench --series S (default 10,000: metrics bench.m0..m9 x
hosts h0..h999), event times spread over the last --ts-spread (default
60s). Rules (--shape):
  where    one rule per series: bench.m<j> where host=h<k>, p99 over 1m
           > 1e12 (the steady state: evaluated every closed bucket, never
           firing), RULES of them;
  grouped  RULES/1000 rules on bench.m<j> with group_by host (1,000
           instances each), so RULES instances.
The node's alert counters (evaluations) are read after each phase to show
that the rules were evaluated. Cases are interleaved run by run (--runs).

  python3 tests/soak/alerts_ingest.py --bin-dir build/apps --source-dir . \
      --rules 10000 --runs 2 --duration 20
"""

import argparse
import os
import statistics
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_bench as B  # noqa: E402


def rules_for(shape, count, series):
    metrics = min(10, series)
    if shape == "grouped":
        per_rule = max(1, series // metrics)
        n = max(1, count // per_rule)
        for i in range(n):
            yield {"name": f"g{i}", "metric": f"bench.m{i % metrics}",
                   "where": {"region": ["eu", "us", "ap", "sa"][(i // metrics) % 4]}
                   if n > metrics else {},
                   "group_by": ["host"], "agg": "p99", "window": "1m",
                   "op": ">", "threshold": 1e12}
        return
    for i in range(count):
        s = i % series
        yield {"name": f"r{i}", "metric": f"bench.m{s % 10}",
               "where": {"host": f"h{s // 10}"}, "agg": "p99", "window": "1m",
               "op": ">", "threshold": 1e12}


def alert_counters(node):
    """cairn_alert_rules and cairn_alert_evaluations_total from /metrics."""
    url = f"http://127.0.0.1:{node.http_port}/metrics"
    text = urllib.request.urlopen(url, timeout=30).read().decode()
    out = {}
    for line in text.splitlines():
        for key, name in (("rules", "cairn_alert_rules "),
                          ("evaluations", "cairn_alert_evaluations_total ")):
            if line.startswith(name):
                out[key] = float(line.split()[-1])
    return out


def run_case(args, rules):
    node = H.Node(args.bin_dir, args.source_dir, name="alr", partitions=8,
                  extra_args=["--cairn.storage.sync=always"])
    out = {}
    try:
        node.start()
        node.wait_ready(timeout=60)
        if rules:
            t0 = time.time()
            with node.client(timeout=120) as c:
                replies = c.pipeline(({"op": "alert.create", "rule": r}
                                      for r in rules_for(args.shape, rules, args.series)),
                                     window=64, timeout=120)
            bad = [r for r in replies if not r.get("ok")]
            if bad:
                raise H.TestFailure(f"alert.create failed: {bad[:3]}")
            out["rules_created"] = len(replies)
            out["create_s"] = round(time.time() - t0, 1)
        common = ["--mode", "ff", "--connections", 2, "--series", args.series,
                  "--ts-spread", args.ts_spread]
        for phase, extra in (("fixed", ["--rate", args.rate, "--flush-every", 20000]),
                             ("max", ["--rate", 0])):
            cpu0, t0 = H.cpu_seconds(node.proc.pid), time.time()
            res = B.bench(node, *common, "--duration", args.duration, *extra)
            cpu1, t1 = H.cpu_seconds(node.proc.pid), time.time()
            out[phase] = {"accepted_per_second": round(res.get("accepted_per_second", 0)),
                          "node_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 1),
                          "ack_p99_ms": (res.get("ack_latency_ms") or {}).get("p99"),
                          "ok": res.get("ok")}
            out[phase].update(alert_counters(node))
        node.terminate(60)
    finally:
        node.cleanup()
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--rules", type=int, default=10000)
    ap.add_argument("--shape", choices=("where", "grouped"), default="where")
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=100000)
    ap.add_argument("--ts-spread", default="60s")
    ap.add_argument("--duration", type=int, default=20)
    ap.add_argument("--runs", type=int, default=2)
    args = ap.parse_args()
    results = {0: [], args.rules: []}
    for run in range(args.runs):
        for rules in results:
            r = run_case(args, rules)
            results[rules].append(r)
            H.log(f"  run {run + 1} rules={rules}: {r}")
    H.log(f"load average {os.getloadavg()}")
    for phase, key in (("fixed", "node_cpu_pct"), ("fixed", "accepted_per_second"),
                       ("fixed", "ack_p99_ms"), ("max", "accepted_per_second")):
        meds = {}
        for rules, runs in results.items():
            vals = [r[phase][key] for r in runs if r[phase].get(key) is not None]
            meds[rules] = statistics.median(vals) if vals else None
        base, with_rules = meds[0], meds[args.rules]
        ratio = (f"; with/without {with_rules / base * 100:.1f}%"
                 if base and with_rules is not None else "")
        H.log(f"RESULT {phase} {key}: no rules {base}, {args.rules} {args.shape} rules "
              f"{with_rules}{ratio}")


if __name__ == "__main__":
    main()
