#!/usr/bin/env python3
"""Rebalance from 3 to 4 members under load (issue 13's target;
docs/benchmarks.md, "Membership changes"). Not a ctest.

4 cairn-node processes (16 partitions by default), then:

1. `decommission n4` while the cluster is empty: n1..n3 own everything;
2. load --events (10 M) fire-and-forget events into n1..n3 (cairn-bench,
   --series series, event times spread over the last minute);
3. before: acknowledged ingest (cairn-bench --mode ack) into n1 for
   --duration s: the baseline events/s;
4. during: `join n4` (a join saga: n4's left mark cleared, a rebalance moves
   P/4 partitions to it, rebalance-concurrency at a time) while the same
   acknowledged ingest runs until the saga finished: events/s during the
   move, the saga's time and bytes shipped, and every source's write pause
   (cairn_handoff_pause_seconds, p50/p99 from `stats`, and per move from
   its saga records: freeze begun to drop begun, "pause" in step_ms);
5. the counts: every node answers complete and equal to what was loaded.

  python3 tests/soak/rebalance_bench.py --bin-dir $PWD/build/apps \
      --source-dir $PWD --events 10000000

Where the time goes: --timeline logs n1's accepted events/s every ~50 ms
over the move next to every step's start and end (the stats requests cost
a little ingest themselves), and CAIRN_DURING runs a command alongside the
move, e.g. CAIRN_DURING="perf record -a -g -o /tmp/move.data -- sleep 1.6".
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402


def bench(node, *args, timeout=3600):
    cmd = [os.path.join(node.bin_dir, "cairn-bench"), "--port",
           str(node.tcp_port), "--json", *map(str, args)]
    h.log("  $ cairn-bench " + " ".join(map(str, args)) + f"  (-> {node.name})")
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise h.TestFailure(f"cairn-bench failed: {r.stdout[-300:]} {r.stderr[-300:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def request(node, req, timeout=30):
    with node.client(timeout) as c:
        return c.request(req, timeout)


def run_saga(node, req, timeout=3600):
    for _ in range(60):  # right after a start no coordinator leads yet
        r = request(node, req)
        if r.get("ok") or (r.get("error") or {}).get("code") != "unavailable":
            break
        time.sleep(0.5)
    if not r.get("ok"):
        raise h.TestFailure(f"{req}: {r}")
    sid = r["id"]
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = request(node, {"op": "saga.get", "id": sid}).get("saga", {})
        if s.get("phase") in ("succeeded", "compensated", "stuck"):
            return s
        time.sleep(0.2)
    raise h.TestFailure(f"saga {sid} did not finish")


def total_count(node, metrics):
    got, partial = 0, False
    for m in metrics:
        r = request(node, {"op": "query", "metric": m, "from": "-1h",
                           "step": "1h", "aggs": ["count"]}, 120)
        partial = partial or r.get("partial", True)
        got += sum(p.get("count", 0) for s in r.get("series", [])
                   for p in s.get("points", []))
    return got, partial


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--partitions", type=int, default=16)
    ap.add_argument("--events", type=int, default=10_000_000)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--sync", default="interval")
    ap.add_argument("--bytes-per-second", type=int, default=16 << 20)
    ap.add_argument("--concurrency", type=int, default=None,
                    help="cairn.cluster.rebalance-concurrency (the node's "
                         "default when not given)")
    ap.add_argument("--timeline", action="store_true")
    args = ap.parse_args()
    extra = [f"--cairn.storage.sync={args.sync}",
             f"--cairn.cluster.rebalance-bytes-per-second={args.bytes_per_second}"]
    if args.concurrency is not None:
        extra.append(f"--cairn.cluster.rebalance-concurrency={args.concurrency}")
    cluster = Cluster(args, n=4, partitions=args.partitions, prefix="n",
                      extra_args=extra)
    try:
        cluster.start()
        n1, n2, n3, n4 = cluster.nodes
        s = run_saga(n1, {"op": "saga.decommission", "node": "n4"})
        h.log(f"decommission n4 (empty): {s['phase']}")
        t = time.time()
        per = args.events // 3
        loaders = [threading.Thread(target=bench, args=(n, "--events", per,
                                                        "--series", args.series,
                                                        "--ts-spread", "60s",
                                                        "--connections", 2))
                   for n in (n1, n2, n3)]
        for x in loaders:
            x.start()
        for x in loaders:
            x.join()
        loaded = per * 3
        h.log(f"loaded {loaded} events in {time.time() - t:.1f}s")
        before = bench(n1, "--mode", "ack", "--duration", args.duration,
                       "--series", args.series, "--ts-spread", "60s",
                       "--connections", 2, "--batch", 500)
        h.log(f"before: {before.get('events_per_second')} events/s")

        # The load runs until the saga finished; cairn-bench stops at its
        # duration, so it is started with a long one and killed afterwards.
        cmd = [os.path.join(n1.bin_dir, "cairn-bench"), "--port",
               str(n1.tcp_port), "--json", "--mode", "ack", "--duration",
               "3600", "--series", str(args.series), "--ts-spread", "60s",
               "--connections", "2", "--batch", "500"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        time.sleep(2)
        acc1 = request(n1, {"op": "stats"})["events"]["accepted"]
        # Where the time goes (module docstring): CAIRN_DURING runs beside
        # the move; --timeline samples n1's accepted count every 50 ms.
        during = (subprocess.Popen(os.environ["CAIRN_DURING"], shell=True)
                  if os.environ.get("CAIRN_DURING") else None)
        samples, sampling, sampler = [], threading.Event(), None
        if args.timeline:
            def sample():
                while not sampling.is_set():
                    samples.append((time.time(), request(
                        n1, {"op": "stats"})["events"]["accepted"]))
                    time.sleep(0.05)
            sampler = threading.Thread(target=sample)
            sampler.start()
        t0 = time.time()
        s = run_saga(n1, {"op": "saga.join", "node": "n4"})
        took = time.time() - t0
        sampling.set()
        if sampler:
            sampler.join()
        acc2 = request(n1, {"op": "stats"})["events"]["accepted"]
        proc.terminate()
        proc.wait(30)
        if during:
            during.wait(60)
        rate_during = (acc2 - acc1) / took
        h.log(f"join n4: {s['phase']} in {took:.1f}s, progress {s.get('progress')}")
        pauses = {}
        for node in (n1, n2, n3):
            lat = request(node, {"op": "stats"}).get("latency", {})
            for k, v in lat.items():
                if "handoff_pause" in k and v.get("count"):
                    pauses[node.name] = v
        moved = 0
        steps = {}
        for c in s.get("children", []):
            moved += c.get("progress", {}).get("bytes_moved", 0)
            # Where a move's time goes: each step's start to its outcome.
            recs = request(n1, {"op": "saga.get", "id": c["id"]})["saga"]["records"]
            # A move without a pre-copy (an older build) has 4 steps.
            last = max((r["step"] for r in recs if "step" in r), default=0)
            names = (["copy", "freeze", "ship", "commit", "drop"] if last == 4
                     else ["freeze", "ship", "commit", "drop"])
            begun = {}
            for r in recs:
                if r["kind"] == "step_started":
                    begun[r["step"]] = r["at"]
                elif r["kind"] == "step_done" and r["step"] in begun:
                    steps.setdefault(names[r["step"]], []).append(
                        r["at"] - begun[r["step"]])
            if args.timeline:
                for r in recs:
                    if "step" in r:
                        h.log(f"  t={r['at'] / 1000 - t0:+.3f}s {c['id']} "
                              f"{names[r['step']]} {r['kind']}")
            # The write pause of this move, exactly: the freeze began to
            # the drop began (the drop answers the held writes first).
            freeze, drop = names.index("freeze"), names.index("drop")
            if freeze in begun and drop in begun:
                steps.setdefault("pause", []).append(begun[drop] - begun[freeze])
        for (a, x), (b, y) in zip(samples, samples[1:]):
            h.log(f"  t={a - t0:+.3f}s {(y - x) / (b - a):9.0f} events/s")
        m = cluster.cluster_view(n1)["partition_map"]
        counts = {n: m["owners"].count(n) for n in ("n1", "n2", "n3", "n4")}
        metrics = [f"bench.m{i}" for i in range(10)]
        time.sleep(3)
        answers = {node.name: total_count(node, metrics) for node in cluster.nodes}
        result = {
            "partitions": args.partitions, "events_loaded": loaded,
            "series": args.series,
            "before_events_per_sec": before.get("events_per_second"),
            "during_events_per_sec": round(rate_during),
            "during_vs_before": round(rate_during / before["events_per_second"], 3)
            if before.get("events_per_second") else None,
            "rebalance_seconds": round(took, 1), "bytes_moved": moved,
            "moves": len(s.get("children", [])), "owned_after": counts,
            "write_pause": pauses, "step_ms": steps, "counts": answers,
        }
        print(json.dumps(result, indent=1))
    finally:
        cluster.stop_all(h.Checker("rebalance_bench"))
        if not args.keep:
            cluster.cleanup()


if __name__ == "__main__":
    main()
