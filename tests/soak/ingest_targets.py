#!/usr/bin/env python3
"""Issue 14's other ingest targets, in one run on one machine. Not a ctest.

  1. `ingest` requests of 1,000 events (ack mode), durable: events/s
     (target >= 1 M/s).
  2. Ack latency at 100k events/s durable (requests of --latency-batch
     events): p50/p99 of the acknowledgement and the node's CPU over the run
     as a share of one core (targets: p99 < 10 ms, CPU <= 35 %).
  3. Scaling: fire-and-forget durable, the node's threads pinned with
     `taskset -a` to one core and then to two (target: ratio >= 1.7). The
     load generator is not pinned.

Every load has the realistic shape (--ts-spread 60s --value-spread 5, 2
connections) and each figure is the median of --runs runs.

  python3 tests/soak/ingest_targets.py --bin-dir build/apps --source-dir . \
      [--runs 3] [--duration 8] [--series 1000]
"""

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_bench as B  # noqa: E402

DURABLE = ["--cairn.storage.sync=always"]


def with_node(args, fn, cpus=None):
    node = H.Node(args.bin_dir, args.source_dir, name="targets", partitions=8,
                  extra_args=DURABLE)
    try:
        node.start()
        node.wait_ready(timeout=60)
        if cpus:
            subprocess.run(["taskset", "-a", "-cp", cpus, str(node.proc.pid)],
                           check=True, capture_output=True)
        return fn(node)
    finally:
        node.terminate(60)
        node.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--latency-batch", type=int, default=1000)
    args = ap.parse_args()
    shape = ["--connections", 2, "--duration", args.duration, "--series", args.series,
             "--ts-spread", "60s", "--value-spread", 5]
    ack_rates, p50s, p99s, cpus, one, two = [], [], [], [], [], []
    for run in range(args.runs):
        res = with_node(args, lambda n: B.bench(n, "--mode", "ack", "--batch", 1000, *shape))
        ack_rates.append(res.get("accepted_per_second", 0))
        H.log(f"  run {run + 1} ack, requests of 1000: {ack_rates[-1]:,.0f} ev/s")

        def paced(node):
            c0 = H.cpu_seconds(node.proc.pid)
            r = B.bench(node, "--mode", "ack", "--batch", args.latency_batch,
                        "--rate", 100000, *shape)
            return r, H.cpu_seconds(node.proc.pid) - c0
        res, cpu = with_node(args, paced)
        lat = res.get("ack_latency_ms", {})
        p50s.append(lat.get("p50", float("nan")))
        p99s.append(lat.get("p99", float("nan")))
        cpus.append(100 * cpu / res["wall_seconds"])
        H.log(f"  run {run + 1} 100k/s ack: p50 {p50s[-1]:.2f} ms p99 {p99s[-1]:.2f} ms, "
              f"node CPU {cpus[-1]:.0f} % of a core ({res.get('accepted_per_second', 0):,.0f} ev/s)")
        for cores, out in (("0", one), ("0,1", two)):
            res = with_node(args, lambda n: B.bench(n, "--mode", "ff", *shape), cpus=cores)
            out.append(res.get("accepted_per_second", 0))
            H.log(f"  run {run + 1} ff on cpus {cores}: {out[-1]:,.0f} ev/s")
    med = statistics.median
    H.log(f"RESULT {args.series} series, 60 s spread, durable, median of {args.runs}:")
    H.log(f"RESULT   ingest requests of 1000 (ack): {med(ack_rates):,.0f} ev/s")
    H.log(f"RESULT   100k ev/s in requests of {args.latency_batch}: ack p50 {med(p50s):.2f} ms, "
          f"p99 {med(p99s):.2f} ms, node CPU {med(cpus):.0f} % of one core")
    H.log(f"RESULT   ff on 1 core {med(one):,.0f} ev/s, on 2 cores {med(two):,.0f} ev/s: "
          f"ratio {med(two) / med(one):.2f}")


if __name__ == "__main__":
    main()
