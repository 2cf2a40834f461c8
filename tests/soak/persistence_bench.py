#!/usr/bin/env python3
"""Persistence measurements for docs/benchmarks.md (issue #3). Not a ctest.

  restart     load N events (cairn-bench --mode ff, sync=never to go fast),
              SIGKILL (no final snapshot), restart, time from exec to ping
              "ready"; once with snapshots (given settings), once with
              snapshots effectively disabled (full replay). Prints the ratio.
  throughput  cairn-bench --connections 2 --duration D in ff and ack mode,
              sync=always vs cairn.storage.enabled=false, R runs each, median.
  latency     ack-mode p99.9 at a fixed rate with frequent snapshots vs none.

  python3 tests/soak/persistence_bench.py --bin-dir build-chaos/apps --source-dir . restart
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402
import persistence_helpers as P  # noqa: E402

NO_SNAPSHOTS = ["--cairn.snapshot.every-events=1000000000", "--cairn.snapshot.interval=1000h"]


def bench(node, *args, timeout=3600):
    cmd = [os.path.join(node.bin_dir, "cairn-bench"), "--port", str(node.tcp_port), "--json",
           *map(str, args)]
    H.log("  $ cairn-bench " + " ".join(map(str, args)))
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    try:
        res = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise H.TestFailure(f"cairn-bench failed ({r.returncode}): {r.stdout[-400:]} {r.stderr[-400:]}")
    res["_wall"] = time.time() - t0
    res["_rc"] = r.returncode
    return res


def du(path):
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True).stdout
    return int(out.split()[0])


def restart_case(args, label, extra):
    node = H.Node(args.bin_dir, args.source_dir, name="rst", partitions=args.partitions,
                  extra_args=["--cairn.storage.sync=never"] + extra, keep=args.keep)
    try:
        P.start(node)
        node.wait_ready(timeout=60)
        res = bench(node, "--mode", "ff", "--events", args.events, "--connections", 2,
                    "--series", args.series)
        H.log(f"  [{label}] loaded {res.get('accepted')} events in {res['_wall']:.1f}s "
              f"({res.get('accepted_per_second', 0):.0f}/s)")
        s = P.stats(node)
        before = {p["id"]: (p["journal_seq"], p["snapshot_seq"]) for p in s["partitions"]}
        time.sleep(args.settle)
        P.sigkill(node)
        size = du(node.storage)
        t0 = time.time()
        P.start(node)
        took, seen = P.wait_ready_observing(node, timeout=1800)
        took = time.time() - t0
        s = P.stats(node)
        m = re.findall(r"recovery complete: (\d+) partitions, (\d+) events replayed in (\d+) ms",
                       node.log_text())
        out = {"label": label, "events": res.get("accepted"), "data_dir_bytes": size,
               "ready_s": round(took, 3), "replayed_events": s["recovery"]["replayed_events"],
               "recovery_time_ms": s["recovery"]["time_ms"],
               "log_recovery": m[-1] if m else None, "events_applied": s.get("events_applied"),
               "pings": sorted(x for x in seen if x),
               "before_kill_seq_snap": before}
        H.log(f"  [{label}] " + json.dumps({k: v for k, v in out.items() if k != "before_kill_seq_snap"}))
        node.stop(timeout=120)
        return out
    finally:
        node.cleanup()


def cmd_restart(args):
    snap = [f"--cairn.snapshot.every-events={args.snapshot_every}",
            f"--cairn.snapshot.interval={args.snapshot_interval}"]
    a = restart_case(args, f"snapshots every {args.snapshot_every} ev / {args.snapshot_interval}", snap)
    b = restart_case(args, "snapshots disabled (full replay)", NO_SNAPSHOTS)
    H.log(f"RESULT restart: with snapshots {a['ready_s']} s (replayed {a['replayed_events']}), "
          f"full replay {b['ready_s']} s (replayed {b['replayed_events']}), "
          f"ratio {a['ready_s'] / b['ready_s']:.3f} (speed-up x{b['ready_s'] / a['ready_s']:.1f})")


def run_series(args, label, extra, bench_args):
    vals = []
    for i in range(args.runs):
        node = H.Node(args.bin_dir, args.source_dir, name="tp", partitions=args.partitions,
                      extra_args=extra, keep=args.keep)
        try:
            P.start(node)
            node.wait_ready(timeout=60)
            res = bench(node, *bench_args)
            vals.append(res)
            lat = res.get("ack_latency_ms") or {}
            H.log(f"  [{label}] run {i + 1}: {res.get('accepted_per_second', 0):.0f} ev/s "
                  f"(sent {res.get('events_sent')}, accepted {res.get('accepted')}, rc {res['_rc']}) "
                  f"ack p50/p99/p99.9 {lat.get('p50')}/{lat.get('p99')}/{lat.get('p99.9')} ms"
                  + (f" final flush {res.get('final_flush_ms'):.0f} ms" if res.get("final_flush_ms") else ""))
            if args.stats:
                s = P.stats(node)
                H.log("    snapshots: " + str([p["snapshot_seq"] for p in s["partitions"]]))
            node.stop(timeout=120)
        finally:
            node.cleanup()
    return vals


def med(vals, f):
    xs = [f(v) for v in vals if f(v) is not None]
    return statistics.median(xs) if xs else None


def cmd_throughput(args):
    out = {}
    for mode in ("ff", "ack"):
        for label, extra in (("durable sync=always", ["--cairn.storage.sync=always"]),
                             ("in-memory", ["--cairn.storage.enabled=false"])):
            vals = run_series(args, f"{mode} {label}", extra,
                              ["--mode", mode, "--connections", 2, "--duration", args.duration,
                               "--series", args.series])
            out[(mode, label)] = med(vals, lambda v: v.get("accepted_per_second"))
            H.log(f"  MEDIAN {mode} {label}: {out[(mode, label)]:.0f} ev/s")
    for mode in ("ff", "ack"):
        d, m = out[(mode, "durable sync=always")], out[(mode, "in-memory")]
        H.log(f"RESULT throughput {mode}: durable {d:.0f} ev/s, in-memory {m:.0f} ev/s, "
              f"ratio {d / m * 100:.1f}%")


def cmd_latency(args):
    res = {}
    for label, extra in ((f"snapshots every {args.snapshot_every} ev", [
            f"--cairn.snapshot.every-events={args.snapshot_every}",
            "--cairn.snapshot.interval=1s"]),
            ("no snapshots", NO_SNAPSHOTS)):
        vals = run_series(args, label, ["--cairn.storage.sync=always"] + extra,
                          ["--mode", "ack", "--connections", 2, "--duration", args.duration,
                           "--rate", args.rate, "--batch", args.batch, "--series", args.series])
        res[label] = {q: med(vals, lambda v, q=q: (v.get("ack_latency_ms") or {}).get(q))
                      for q in ("p50", "p99", "p99.9")}
        H.log(f"  MEDIAN {label}: {res[label]}")
    H.log("RESULT latency: " + json.dumps(res))


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--partitions", type=int, default=8)
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--duration", type=int, default=10)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--settle", type=float, default=0.0,
                   help="restart: seconds between the end of the load and SIGKILL")
    p.add_argument("--snapshot-every", type=int, default=1_000_000)
    p.add_argument("--snapshot-interval", default="60s")
    p.add_argument("--rate", type=int, default=20000)
    p.add_argument("--batch", type=int, default=1000)
    p.add_argument("--stats", action="store_true")
    p.add_argument("what", choices=["restart", "throughput", "latency"])
    args = p.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.source_dir = os.path.abspath(args.source_dir)
    H.log(f"load average before: {os.getloadavg()}")
    {"restart": cmd_restart, "throughput": cmd_throughput, "latency": cmd_latency}[args.what](args)
    H.log(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
