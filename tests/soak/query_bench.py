#!/usr/bin/env python3
"""Query latency benchmark for docs/benchmarks.md (issue #10). Not a ctest.

Fills each node (in-memory, 8 partitions, configs/single.ini tiers) with the
same events: SERIES series of metric `q.lat`, tag host=h0..h{SERIES-1}, one
event per series every INTERVAL seconds with event times spread over the last
hour (sent as fast as the node takes them, not in real time), then runs each
query N times with cairn-bench --query-mode (one connection, one request in
flight) and reports p50 / p99 / p99.9. Several nodes (e.g. main's binary and
a branch's) are filled with the same bytes and measured in the same run,
rounds interleaved so that machine noise hits both alike.

  python3 tests/soak/query_bench.py --source-dir . \
      --bin-dir base=/work/main/build/apps --bin-dir new=build/apps \
      --queries 2000 --rounds 3

Before timing, the group-by answers of all nodes over a fixed, second-aligned
range are compared (points and values must agree; the `tier` may differ).
"""

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402

METRIC = "q.lat"

QUERIES = {
    "groupby_5m": {"op": "query", "metric": METRIC, "from": "-5m", "step": "1m",
                   "aggs": ["p99"], "group_by": ["host"]},
    "groupby_1h": {"op": "query", "metric": METRIC, "from": "-1h", "step": "1m",
                   "aggs": ["p99"], "group_by": ["host"]},
    "single_5m": {"op": "query", "metric": METRIC, "from": "-5m", "step": "10s",
                  "aggs": ["count", "p99"], "where": {"host": "h0"}},
}


def pin(queries, fill_now):
    """The queries as they read at the end of the fill: from/to fixed at the
    fill's "now" (unaligned, like a relative time), so that every round reads
    the same data however long the run takes (keep it under ~10 minutes, while
    the 1 s tier still covers the 5-minute window)."""
    span = {"-5m": 5 * 60_000, "-1h": 60 * 60_000}
    return {n: dict(q, **{"from": fill_now - span[q["from"]], "to": fill_now})
            for n, q in queries.items()}


def make_events(series, interval_s, span_s, seed):
    """The fill as NDJSON bytes, oldest events first, event times over the
    `span_s` seconds before now. Every node gets these very bytes."""
    rng = random.Random(seed)
    now = H.now_ms() + 15_000  # the fill takes a few seconds; none in the future then
    parts = []
    for back in range(span_s, 0, -interval_s):
        for h in range(series):
            v = round(rng.lognormvariate(3.0, 0.8), 3)
            ts = now - back * 1000 + rng.randrange(0, 1000 * interval_s)
            parts.append('{"metric":"%s","ts":%d,"value":%r,"tags":{"host":"h%d"}}\n'
                         % (METRIC, ts, v, h))
    return "".join(parts).encode(), now


def fill(node, data):
    t0 = time.time()
    with node.client(timeout=600) as c:
        for i in range(0, len(data), 1 << 20):
            c.send_raw(data[i:i + (1 << 20)])
        r = c.request({"op": "flush"}, timeout=600)
    H.log(f"  {node.name}: filled {r.get('accepted')} events "
          f"({r.get('rejected')} rejected) in {time.time() - t0:.1f}s")
    if r.get("rejected"):
        raise H.TestFailure(f"fill rejected events: {r}")


def bench(node, query, n):
    cmd = [os.path.join(node.bin_dir, "cairn-bench"), "--port", str(node.tcp_port),
           "--json", "--query-mode", "--connections", "1", "--queries", str(n),
           "--query", json.dumps(query, separators=(",", ":"))]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise H.TestFailure(f"cairn-bench failed ({r.returncode}): "
                            f"{r.stdout[-400:]} {r.stderr[-400:]}")
    if res.get("query_errors"):
        raise H.TestFailure(f"query errors: {res}")
    return res["query_latency_us"]


def compare_answers(nodes, span_s):
    """Same data, fixed aligned range: every node must give the same points."""
    now = H.now_ms()
    to = now - now % 60000
    answers = {}
    for q in (dict(QUERIES["groupby_5m"], **{"from": to - 5 * 60000, "to": to}),
              dict(QUERIES["groupby_1h"], **{"from": to - 60 * 60000, "to": to}),
              dict(QUERIES["groupby_5m"], **{"from": to - 5 * 60000 + 7000, "to": to - 3000,
                                             "aggs": ["count", "p99", "max", "rate"]})):
        for node in nodes:
            with node.client() as c:
                r = c.request(q, timeout=60)
            if not r.get("ok"):
                raise H.TestFailure(f"{node.name}: {r}")
            answers.setdefault(json.dumps(q), []).append((node.name, r.get("tier"), r["series"]))
    for q, rs in answers.items():
        ref_name, _, ref = rs[0]
        for name, tier, series in rs[1:]:
            if series != ref:
                raise H.TestFailure(f"{name} and {ref_name} differ on {q}")
        H.log(f"  same answer from {', '.join(n for n, _, _ in rs)} "
              f"(tiers {', '.join(str(t) for _, t, _ in rs)}, "
              f"{sum(len(s['points']) for s in ref)} points) for {q[:90]}...")


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--bin-dir", action="append", required=True,
                   help="NAME=DIR holding cairn-node and cairn-bench (repeatable)")
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--interval", type=int, default=1,
                   help="seconds between two events of one series")
    p.add_argument("--span", type=int, default=3600, help="seconds of history")
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--only", action="append", help="query names to run")
    p.add_argument("--perf", metavar="FILE",
                   help="after the rounds, record `perf record -g` of each node "
                        "while it answers the first --only query (FILE.NAME)")
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    source = os.path.abspath(args.source_dir)
    nodes = []
    try:
        for spec in args.bin_dir:
            name, _, d = spec.partition("=")
            node = H.Node(os.path.abspath(d), source, name=name, keep=args.keep,
                          extra_args=["--cairn.storage.enabled=false"])
            node.start()
            node.wait_ready(timeout=60)
            nodes.append(node)
        H.log(f"generating {args.series} series x {args.span // args.interval} events")
        events, fill_now = make_events(args.series, args.interval, args.span, 42)
        for node in nodes:
            fill(node, events)
        del events
        while H.now_ms() < fill_now:
            time.sleep(0.1)
        queries = pin(QUERIES, fill_now)
        compare_answers(nodes, args.span)
        names = args.only or list(QUERIES)
        results = {(q, n.name): [] for q in names for n in nodes}
        for rnd in range(args.rounds):
            for q in names:
                for node in (nodes if rnd % 2 == 0 else nodes[::-1]):
                    lat = bench(node, queries[q], args.queries)
                    results[(q, node.name)].append(lat)
                    H.log(f"  round {rnd} {q:11} {node.name:6} p50 {lat['p50']:8.0f} us  "
                          f"p99 {lat['p99']:8.0f} us  p99.9 {lat['p99.9']:8.0f} us")
        if args.perf:
            for node in nodes:
                out = f"{args.perf}.{node.name}"
                rec = subprocess.Popen(["perf", "record", "-g", "-o", out, "-p",
                                        str(node.proc.pid)], stdout=subprocess.DEVNULL,
                                       stderr=subprocess.DEVNULL)
                time.sleep(0.5)
                bench(node, queries[names[0]], args.queries)
                rec.send_signal(2)
                rec.wait(timeout=60)
                H.log(f"  perf profile of {node.name} on {names[0]}: {out}")
        H.log("")
        H.log("| query | node | p50 (rounds) | p99 (rounds) | median p50 | median p99 |")
        H.log("| --- | --- | --- | --- | --- | --- |")
        for q in names:
            for node in nodes:
                rs = results[(q, node.name)]
                p50s = [r["p50"] / 1000 for r in rs]
                p99s = [r["p99"] / 1000 for r in rs]
                H.log(f"| {q} | {node.name} | {' / '.join(f'{x:.2f}' for x in p50s)} | "
                      f"{' / '.join(f'{x:.2f}' for x in p99s)} | "
                      f"{statistics.median(p50s):.2f} ms | {statistics.median(p99s):.2f} ms |")
    finally:
        for node in nodes:
            node.cleanup()


if __name__ == "__main__":
    main()
