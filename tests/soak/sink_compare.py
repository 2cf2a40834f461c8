#!/usr/bin/env python3
"""Cairn against a parse-only sink, in one run (issue 14: durable >= 35 % of
a sink that only reads the lines and parses them with simdjson). Not a ctest.

Runs the same cairn-bench load (fire-and-forget, 2 connections, the realistic
shape: --ts-spread 60s --value-spread 5) against build/bench/parse_sink and
against a node durable (sync=always) and in memory, interleaved run by run so
that machine noise hits all alike, and prints the medians and the ratios.
The bench shares the machine with whichever receiver runs (as in the issue).

  python3 tests/soak/sink_compare.py --bin-dir build/apps --sink build/bench/parse_sink \
      --source-dir . [--runs 3] [--duration 8] [--series 1000]
"""

import argparse
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_bench as B  # noqa: E402

NODES = (("cairn sync=always", ["--cairn.storage.sync=always"]),
         ("cairn in memory", ["--cairn.storage.enabled=false"]))


class Sink:
    """Enough of H.Node for B.bench: a bin_dir with cairn-bench and a port."""

    def __init__(self, path, bin_dir):
        self.bin_dir = bin_dir
        self.tcp_port = H.free_port()
        self.proc = subprocess.Popen([path, str(self.tcp_port)], stdout=subprocess.PIPE)
        self.proc.stdout.readline()  # "listening on ..."

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--sink", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--series", type=int, default=1000)
    args = ap.parse_args()
    load = ["--mode", "ff", "--connections", 2, "--duration", args.duration,
            "--series", args.series, "--ts-spread", "60s", "--value-spread", 5]
    results = {label: [] for label in ["parse-only sink"] + [n for n, _ in NODES]}
    for run in range(args.runs):
        sink = Sink(os.path.abspath(args.sink), args.bin_dir)
        try:
            v = B.bench(sink, *load).get("accepted_per_second", 0)
        finally:
            sink.stop()
        results["parse-only sink"].append(v)
        H.log(f"  run {run + 1} parse-only sink: {v:,.0f} ev/s")
        for label, extra in NODES:
            node = H.Node(args.bin_dir, args.source_dir, name="sink", partitions=8,
                          extra_args=extra)
            try:
                node.start()
                node.wait_ready(timeout=60)
                v = B.bench(node, *load).get("accepted_per_second", 0)
                results[label].append(v)
                H.log(f"  run {run + 1} {label}: {v:,.0f} ev/s")
                node.terminate(60)
            finally:
                node.cleanup()
        time.sleep(1)
    floor = statistics.median(results["parse-only sink"])
    H.log(f"RESULT {args.series} series, 60 s spread, 2 connections, median of {args.runs}:")
    for label, runs in results.items():
        m = statistics.median(runs)
        H.log(f"RESULT   {label}: {m:,.0f} ev/s ({m / floor * 100:.0f} % of the sink; "
              f"runs {[round(x) for x in runs]})")


if __name__ == "__main__":
    main()
