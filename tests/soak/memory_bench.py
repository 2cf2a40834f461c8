#!/usr/bin/env python3
"""Memory of a node holding history (issue 10, docs/benchmarks.md). Not a ctest.

Fills a node with SERIES series x RATE events per series per second, event
times spread over the past HISTORY seconds (sent as fast as the node takes
them, oldest first, fire-and-forget), waits until every event is applied
and the seal pass has run (--settle, 8 s), then reads VmRSS from
/proc/<pid>/status (rss_mb) and again after --settle-long (70 s:
rss_settled_mb, once the fill's ingest request timeouts in CAF's clock have
expired; docs/benchmarks.md) and, if
the node reports them (stats counters cairn_memory_*), the bytes per sealed
bucket of each tier. Every --bin-dir given is measured in the same run, one
after the other, with the same events (same seed).

  python3 tests/soak/memory_bench.py --bin-dir build/apps --bin-dir /work/main/build/apps \
      --source-dir . --series 10000 --rate 1 --history 3600

Values: --values int (lognormal latencies rounded to whole ms, the default),
dec3 (the same with three decimals, as cairn-bench sends), or gauge (a
slowly drifting integer gauge). Storage is off unless --storage (the
journal's LevelDB memory is not the store's).
"""

import argparse
import json
import os
import random
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402

REGIONS = ["eu", "us", "ap", "sa"]


def vm_rss(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def mappings(pid):
    """RSS by kind of mapping (MB): the main heap, other anonymous mappings
    (thread arenas, large allocations, stacks) and file-backed ones."""
    out = {"heap": 0, "anon": 0, "file": 0}
    kind = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            if "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
                path = parts[5] if len(parts) > 5 else ""
                kind = "heap" if path == "[heap]" else ("anon" if path in ("", "[stack]") or path.startswith("[anon") else "file")
            elif parts[0] == "Rss:" and kind:
                out[kind] += int(parts[1]) * 1024
    return {k: round(v / 2**20, 1) for k, v in out.items()}


def value_pool(kind, n, seed):
    rng = random.Random(seed)
    if kind == "int":
        return [str(max(1, round(rng.lognormvariate(3.0, 0.8)))) for _ in range(n)]
    if kind == "dec3":
        return ["%.3f" % rng.lognormvariate(3.0, 0.8) for _ in range(n)]
    if kind == "gauge":
        out, v = [], 500
        for _ in range(n):
            v = max(0, v + rng.randint(-3, 3))
            out.append(str(v))
        return out
    raise ValueError(kind)


def drain(sock, counts):
    """Reads (and counts) the error lines the node writes back."""
    buf = b""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    counts["errors"] += 1
                    if counts["errors"] <= 3:
                        H.log("  node: " + line.decode("utf-8", "replace")[:200])
    except OSError:
        return


def templates(args):
    """One second of events per template, epoch seconds left as a
    placeholder: sending a second is one bytes.replace. Values and jitter
    differ between the `period` templates (a prime), so consecutive buckets
    of a series never repeat."""
    prefixes = []
    for s in range(args.series):
        prefixes.append('{"metric":"bench.m%d","tags":{"host":"h%d","region":"%s"},"ts":'
                        % (s % 10, s // 10, REGIONS[(s // 10) % 4]))
    period = 61 if args.rate == 1 else 13
    values = value_pool(args.values, period * args.series * args.rate + 7, args.seed)
    rng = random.Random(args.seed + 1)
    step = 1000 // args.rate
    span = max(1, min(100, step))
    out = []
    vi = 0
    for _ in range(period):
        parts = []
        for j in range(args.rate):
            for p in prefixes:
                ms = j * step + rng.randrange(0, span)
                parts.append(f'{p}@@@@@@@@@@{ms:03d},"value":{values[vi]}}}\n')
                vi += 1
        out.append("".join(parts).encode())
    return out


def fill(node, args, tmpl):
    """Sends the history oldest first; returns the number of events sent."""
    # Second k of the history is stamped relative to the moment it is
    # sent (now - (history - k) s): faster than real time, the timeline
    # stays ascending, and when the fill ends the last `history` seconds
    # before now are exactly covered however long the fill took.
    sock = socket.create_connection(("127.0.0.1", node.tcp_port))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    counts = {"errors": 0}
    reader = threading.Thread(target=drain, args=(sock, counts), daemon=True)
    reader.start()
    per_second = args.series * args.rate
    sent = 0
    t0 = time.time()
    for sec in range(args.history):
        stamp = H.now_ms() // 1000 - (args.history - sec)
        sock.sendall(tmpl[sec % len(tmpl)].replace(b"@@@@@@@@@@", b"%d" % stamp))
        sent += per_second
        if sec % 600 == 599:
            H.log(f"  sent {sent:,} events ({sent / (time.time() - t0):,.0f}/s)")
    sock.shutdown(socket.SHUT_WR)
    return sent, counts, sock, reader


def stats(node):
    with node.client(timeout=30) as c:
        return c.request({"op": "stats"}, timeout=30)


def measure(bin_dir, args, tmpl):
    extra = ["--cairn.log.level=warn", f"--cairn.ingest.parsers={args.parsers}"]
    if not args.storage:
        extra.append("--cairn.storage.enabled=false")
    node = H.Node(bin_dir, args.source_dir, name="mem", partitions=8, extra_args=extra)
    try:
        node.start()
        node.wait_ready(timeout=60)
        idle = vm_rss(node.proc.pid)
        t0 = time.time()
        sent, counts, sock, reader = fill(node, args, tmpl)
        # Wait until every event is applied.
        deadline = time.time() + 900
        applied = 0
        while time.time() < deadline:
            applied = stats(node).get("events_applied", 0)
            if applied + counts["errors"] >= sent:
                break
            time.sleep(1)
        took = time.time() - t0
        sock.close()
        # Let the seal pass and the memory gauges (every 5 ticks) run.
        time.sleep(args.settle)
        st = stats(node)
        rss = vm_rss(node.proc.pid)
        with open(f"/proc/{node.proc.pid}/status") as f:
            hwm = next((int(l.split()[1]) * 1024 for l in f if l.startswith("VmHWM:")), 0)
        counters = st.get("counters", {})
        settled = None
        if args.settle_long > args.settle:
            # Every ingest request of the fill left a timeout entry in CAF's
            # actor clock (cairn.ingest.timeout, 60 s; CAF 0.17 drops it
            # only when it expires): ~25 MB after a fill at 400k ev/s. Read
            # again once they are gone, with the store's accounting then.
            time.sleep(args.settle_long - args.settle)
            settled = round(vm_rss(node.proc.pid) / 2**20, 1)
            st = stats(node)
            counters = st.get("counters", {})
        row = {"bin_dir": bin_dir, "series": args.series, "rate": args.rate,
               "history_s": args.history, "values": args.values, "events": sent,
               "applied": applied, "errors": counts["errors"],
               "fill_s": round(took, 1), "rss_mb": round(rss / 2**20, 1),
               "rss_settled_mb": settled, "settle_long_s": args.settle_long,
               "peak_rss_mb": round(hwm / 2**20, 1), "idle_rss_mb": round(idle / 2**20, 1),
               "buckets": st.get("buckets"), "rss_by_mapping_mb": mappings(node.proc.pid)}
        mem = {k: v for k, v in counters.items() if k.startswith("cairn_memory_")}
        if mem:
            row["memory"] = mem
            for k, v in mem.items():
                if k.startswith('cairn_memory_sealed_bytes{tier="'):
                    tier = k[len('cairn_memory_sealed_bytes{tier="'):-2]
                    n = mem.get('cairn_memory_sealed_buckets{tier="%s"}' % tier, 0)
                    if n:
                        row[f"bytes_per_sealed_bucket_{tier}"] = round(v / n, 2)
        return row
    finally:
        node.terminate()
        node.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", action="append", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--series", type=int, default=10000)
    ap.add_argument("--rate", type=int, default=1, help="events per series per second")
    ap.add_argument("--history", type=int, default=3600, help="seconds of history")
    ap.add_argument("--values", default="int", choices=["int", "dec3", "gauge"])
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--parsers", default="auto")
    ap.add_argument("--settle", type=float, default=8.0)
    ap.add_argument("--settle-long", type=float, default=70.0,
                    help="second reading (rss_settled_mb) this long after the fill; 0: none")
    ap.add_argument("--storage", action="store_true")
    args = ap.parse_args()
    rows = []
    tmpl = templates(args)
    for b in args.bin_dir:
        H.log(f"== {b}: {args.series} series x {args.rate}/s x {args.history}s ({args.values})")
        row = measure(b, args, tmpl)
        H.log(json.dumps(row))
        rows.append(row)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
