#!/usr/bin/env python3
"""Soak: does the data directory stay bounded under steady load? (issue #3)

Not a ctest test (it runs for minutes). Starts cairn-node with short tiers and
frequent snapshots, drives it with cairn-bench at a steady rate, and samples
`du -sb` of the data directory (plus buckets/series/journal stats) every
--sample seconds. At the end it prints the series and a verdict: the size
"plateaus" if the mean of the last third of the samples is within --tolerance
of the mean of the middle third (a directory growing without bound keeps
climbing linearly).

  python3 tests/soak/soak.py --bin-dir build-chaos/apps --source-dir . --minutes 4

Standard library only; reuses tests/integration/cairn_harness.py.
"""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402


def du_bytes(path):
    out = subprocess.run(["du", "-sb", path], capture_output=True, text=True)
    try:
        return int(out.stdout.split()[0])
    except (IndexError, ValueError):
        return -1


def file_breakdown(path):
    kinds = {}
    for n in os.listdir(path):
        ext = n.rsplit(".", 1)[-1] if "." in n else n.split("-")[0]
        try:
            kinds[ext] = kinds.get(ext, 0) + os.path.getsize(os.path.join(path, n))
        except OSError:
            pass
    return kinds


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--rate", type=int, default=20000, help="events/s (cairn-bench --rate)")
    p.add_argument("--mode", default="ack", choices=["ack", "ff"])
    p.add_argument("--series", type=int, default=1000)
    p.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    p.add_argument("--tiers", default='["1s:30s","10s:2m"]')
    p.add_argument("--snapshot-interval", default="5s")
    p.add_argument("--snapshot-every", type=int, default=200000)
    p.add_argument("--raw-retention", default="20s")
    p.add_argument("--sync", default="always")
    p.add_argument("--tolerance", type=float, default=0.25)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()

    extra = [f"--cairn.tiers={args.tiers}",
             f"--cairn.snapshot.interval={args.snapshot_interval}",
             f"--cairn.snapshot.every-events={args.snapshot_every}",
             f"--cairn.storage.raw-retention={args.raw_retention}",
             f"--cairn.storage.sync={args.sync}"]
    node = H.Node(os.path.abspath(args.bin_dir), os.path.abspath(args.source_dir),
                  name="soak", extra_args=extra, partitions=8, keep=args.keep)
    duration = int(args.minutes * 60)
    samples = []
    rc = 1
    with node:
        H.log("$ " + " ".join(node.command()))
        bench_cmd = [os.path.join(node.bin_dir, "cairn-bench"), "--port", str(node.tcp_port),
                     "--mode", args.mode, "--rate", str(args.rate), "--duration", str(duration),
                     "--connections", "2", "--series", str(args.series), "--json"]
        if args.mode == "ack":
            bench_cmd += ["--batch", "500"]
        H.log("$ " + " ".join(bench_cmd))
        bench = subprocess.Popen(bench_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        t0 = time.time()
        H.log(f"{'t(s)':>6} {'du -sb':>12} {'buckets':>9} {'series':>7} {'events':>10}  files")
        while True:
            elapsed = time.time() - t0
            size = du_bytes(node.storage)
            try:
                s = node.client(10).request({"op": "stats"}, timeout=10)
            except (OSError, TimeoutError, ValueError):
                s = {}
            kinds = file_breakdown(node.storage)
            samples.append((round(elapsed), size, s.get("buckets"), s.get("series"),
                            s.get("events_applied")))
            H.log(f"{elapsed:6.0f} {size:12d} {s.get('buckets', -1):9} {s.get('series', -1):7} "
                  f"{s.get('events_applied', -1):10}  "
                  + " ".join(f"{k}={v // 1024}K" for k, v in sorted(kinds.items())))
            if bench.poll() is not None or elapsed >= duration + 2:
                break
            time.sleep(max(0.0, args.sample - (time.time() - t0 - elapsed)))
        out, err = bench.communicate(timeout=60)
        try:
            res = json.loads(out.strip().splitlines()[-1])
        except (ValueError, IndexError):
            res = {"raw": out[-500:], "stderr": err[-500:]}
        H.log("bench: " + json.dumps(res)[:600])
        final = node.client(10).request({"op": "stats"}, timeout=10)
        H.log("final counters: " + json.dumps({k: v for k, v in final.get("counters", {}).items()
                                               if "journal" in k or "snapshot" in k})[:800])
        sizes = [x[1] for x in samples]
        n = len(sizes)
        if n >= 6:
            mid = sizes[n // 3: 2 * n // 3]
            last = sizes[2 * n // 3:]
            m_mid, m_last = sum(mid) / len(mid), sum(last) / len(last)
            growth = (m_last - m_mid) / max(1, m_mid)
            plateau = growth <= args.tolerance
            H.log(f"size: min {min(sizes)}, max {max(sizes)}, mean of middle third {m_mid:.0f}, "
                  f"mean of last third {m_last:.0f} ({growth * 100:+.1f}%)")
            H.log("VERDICT: " + ("plateaus (bounded)" if plateau else "still growing"))
            rc = 0 if plateau else 1
        else:
            H.log("VERDICT: too few samples")
        H.log("series: " + json.dumps(samples))
    return rc


if __name__ == "__main__":
    sys.exit(main())
