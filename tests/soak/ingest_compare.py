#!/usr/bin/env python3
"""Side-by-side ingest throughput of two builds (issue 10: no slower ingest).
Not a ctest. Interleaves the builds run by run so that machine noise hits
both alike; fire-and-forget in memory and with sync=always (cairn-bench
--connections 2 --duration D --mode ff), median of R runs each.

  python3 tests/soak/ingest_compare.py --bin-dir /work/main/build/apps \
      --bin-dir build/apps --source-dir . --runs 3 --duration 8 [--series 10000 --ts-spread 60s]
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
    args = ap.parse_args()
    results = {(b, m): [] for b in args.bin_dir for m, _ in MODES}
    for run in range(args.runs):
        for label, extra in MODES:
            for b in args.bin_dir:
                node = H.Node(b, args.source_dir, name="cmp", partitions=8, extra_args=extra)
                try:
                    node.start()
                    node.wait_ready(timeout=60)
                    res = B.bench(node, "--mode", "ff", "--connections", 2,
                                  "--duration", args.duration, "--series", args.series,
                                  "--ts-spread", args.ts_spread,
                                  "--value-spread", args.value_spread)
                    v = res.get("accepted_per_second", 0)
                    results[(b, label)].append(v)
                    H.log(f"  run {run + 1} {label} {b}: {v:,.0f} ev/s")
                    node.terminate(60)
                finally:
                    node.cleanup()
    for label, _ in MODES:
        meds = [statistics.median(results[(b, label)]) for b in args.bin_dir]
        H.log(f"RESULT {label}: " + ", ".join(
            f"{b}: {m:,.0f} ev/s (runs {[round(x) for x in results[(b, label)]]})"
            for b, m in zip(args.bin_dir, meds))
            + (f"; ratio last/first {meds[-1] / meds[0] * 100:.0f}%" if meds[0] else ""))


if __name__ == "__main__":
    main()
