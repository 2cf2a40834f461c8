#!/usr/bin/env python3
"""The ingest cost budget as a table (issue 14, docs/benchmarks.md "Ingest
cost budget"). Not a ctest.

Starts a node (8 partitions; durable with sync=always, or in memory), runs
cairn-bench fire-and-forget with the realistic shape (--ts-spread 60s
--value-spread 5 by default), then reads `stats.ingest_stages`
(runtime/ingest_costs.hpp) and prints per stage its events, CPU and
ns/event, their sum (the events/s one core could take at that cost), the
throughput measured, and how much of the node's own CPU (/proc/<pid>/stat)
the stages account for: the rest is the actor system's scheduling, idle
polling, timers and everything else not timed as a stage.

  python3 tests/soak/ingest_stages.py --bin-dir build/apps --source-dir . \\
      [--series 1000] [--duration 8] [--in-memory] [--ts-spread 60s]
"""

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_bench as B  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--duration", type=int, default=8)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--ts-spread", default="60s")
    ap.add_argument("--value-spread", default="5")
    ap.add_argument("--in-memory", action="store_true")
    args = ap.parse_args()
    extra = (["--cairn.storage.enabled=false"] if args.in_memory
             else ["--cairn.storage.sync=always"])
    node = H.Node(os.path.abspath(args.bin_dir), os.path.abspath(args.source_dir),
                  name="stages", partitions=8, extra_args=extra)
    try:
        node.start()
        node.wait_ready(timeout=60)
        cpu0 = H.cpu_seconds(node.proc.pid)
        res = B.bench(node, "--mode", "ff", "--connections", args.connections,
                      "--duration", args.duration, "--series", args.series,
                      "--ts-spread", args.ts_spread, "--value-spread", args.value_spread)
        node_cpu = H.cpu_seconds(node.proc.pid) - cpu0
        with node.client() as c:
            stages = c.request({"op": "stats"})["ingest_stages"]
    finally:
        node.cleanup()
    rate = res.get("accepted_per_second", 0)
    accepted = res.get("accepted", 0)
    H.log(f"{'in memory' if args.in_memory else 'durable, sync=always'}, {args.series} series, "
          f"--ts-spread {args.ts_spread} --value-spread {args.value_spread}, "
          f"{args.connections} connections: {accepted:,} events at {rate:,.0f} events/s")
    H.log("")
    H.log("| stage | events | CPU ms | ns/event | share |")
    H.log("| --- | --- | --- | --- | --- |")
    total_ns = sum(s["ns_per_event"] for s in stages)
    for s in stages:
        share = s["ns_per_event"] / total_ns * 100 if total_ns else 0
        H.log(f"| {s['stage']} | {s['events']:,} | {s['cpu_ms']:,.0f} | "
              f"{s['ns_per_event']:,.0f} | {share:.0f} % |")
    staged = sum(s["cpu_ms"] for s in stages) / 1e3
    H.log(f"| **sum** | | {staged * 1e3:,.0f} | **{total_ns:,.0f}** | |")
    H.log("")
    if total_ns:
        H.log(f"at that cost one core takes {1e9 / total_ns:,.0f} events/s")
    if node_cpu > 0:
        H.log(f"node CPU {node_cpu:.2f} s over the run; the stages account for "
              f"{staged / node_cpu * 100:.0f} % of it")


if __name__ == "__main__":
    main()
