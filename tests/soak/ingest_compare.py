#!/usr/bin/env python3
"""Side-by-side ingest throughput of two builds (issue 10: no slower ingest).
Not a ctest. Interleaves the builds run by run so that machine noise hits
both alike; fire-and-forget in memory and with sync=always (cairn-bench
--connections 2 --duration D --mode ff), median of R runs each.

  python3 tests/soak/ingest_compare.py --bin-dir /work/main/build/apps \
      --bin-dir build/apps --source-dir . --runs 3 --duration 8 [--series 10000 --ts-spread 60s]

With --rate R the load is paced (cairn-bench --rate R) and what counts is
the node's CPU: each run also reports the node's CPU over the run (utime +
stime from /proc) as a share of one core and per accepted event.
"""

import argparse
import os
import statistics
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_bench as B  # noqa: E402

MODES = (("ff in-memory", ["--cairn.storage.enabled=false"]),
         ("ff sync=always", ["--cairn.storage.sync=always"]))


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", action="append", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--value-spread", default="0",
                    help="cairn-bench --value-spread: values over N decades (e.g. 5)")
    ap.add_argument("--ts-spread", default="0",
                    help="cairn-bench --ts-spread: event times over the last D (e.g. 60s)")
    ap.add_argument("--rate", type=int, default=0,
                    help="cairn-bench --rate: total events/s (0 = as fast as the node takes)")
    args = ap.parse_args()
    results = {(b, m): [] for b in args.bin_dir for m, _ in MODES}
    cpu = {(b, m): [] for b in args.bin_dir for m, _ in MODES}
    for run in range(args.runs):
        for label, extra in MODES:
            for b in args.bin_dir:
                node = H.Node(b, args.source_dir, name="cmp", partitions=8, extra_args=extra)
                try:
                    node.start()
                    node.wait_ready(timeout=60)
                    c0 = H.cpu_seconds(node.proc.pid)
                    res = B.bench(node, "--mode", "ff", "--connections", 2,
                                  "--duration", args.duration, "--series", args.series,
                                  "--ts-spread", args.ts_spread,
                                  "--value-spread", args.value_spread,
                                  "--rate", args.rate)
                    used = H.cpu_seconds(node.proc.pid) - c0
                    v = res.get("accepted_per_second", 0)
                    results[(b, label)].append(v)
                    share = 100 * used / res["wall_seconds"]
                    per_event = used * 1e9 / max(1, res.get("accepted", 0))
                    cpu[(b, label)].append((share, per_event))
                    H.log(f"  run {run + 1} {label} {b}: {v:,.0f} ev/s, node CPU "
                          f"{share:.1f} % of a core, {per_event:,.0f} ns per event")
                    node.terminate(60)
                finally:
                    node.cleanup()
    for label, _ in MODES:
        meds = [statistics.median(results[(b, label)]) for b in args.bin_dir]
        H.log(f"RESULT {label}: " + ", ".join(
            f"{b}: {m:,.0f} ev/s (runs {[round(x) for x in results[(b, label)]]})"
            for b, m in zip(args.bin_dir, meds))
            + (f"; ratio last/first {meds[-1] / meds[0] * 100:.0f}%" if meds[0] else ""))
        if args.rate:
            H.log(f"RESULT {label} node CPU: " + ", ".join(
                f"{b}: {statistics.median(s for s, _ in cpu[(b, label)]):.1f} % of a core, "
                f"{statistics.median(e for _, e in cpu[(b, label)]):,.0f} ns per event"
                for b in args.bin_dir))


if __name__ == "__main__":
    main()
