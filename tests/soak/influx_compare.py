#!/usr/bin/env python3
"""Line-protocol ingest vs NDJSON ingest on the same events, side by side
(docs/benchmarks.md, "Line protocol"). Not a ctest.

The same events in three encodings: NDJSON fire-and-forget lines on the
client port, Influx line protocol on cairn.influx.port (ns timestamps, what
Telegraf sends), and line protocol in POST /write bodies of --body-lines
lines. 1000 series (`cpu,host=hNNN,region=R usage=V`, metric cpu.usage),
event times spread over the last minute. The payload is built once (a block
of --block events) and sent --repeat times per connection over
--connections connections, so the sender only copies bytes.
Each run starts a fresh node (in memory unless --sync is given) and measures
from the first byte until the node has acknowledged every event: NDJSON ends
with a flush per connection; the influx port answers nothing, so the stats
op's events.accepted is polled every 5 ms; POST /write answers each body
after its events are acknowledged. Formats are interleaved run by run so
that machine noise hits all alike; the median of --runs runs is reported.

  python3 tests/soak/influx_compare.py --bin-dir build/apps --source-dir . --runs 3
"""

import argparse
import http.client
import json
import os
import random
import socket
import statistics
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402

REGIONS = ("eu", "us", "ap", "sa")


def make_events(n, series, now_ms):
    rnd = random.Random(42)
    out = []
    for i in range(n):
        s = i % series
        ts = now_ms - rnd.randrange(60_000)
        out.append((f"h{s:04d}", REGIONS[s % len(REGIONS)], ts,
                    round(rnd.uniform(0, 100), 3)))
    return out


def ndjson_block(events):
    return "".join(
        f'{{"metric":"cpu.usage","ts":{ts},"value":{v},'
        f'"tags":{{"host":"{host}","region":"{reg}"}}}}\n'
        for host, reg, ts, v in events).encode()


def influx_lines(events):
    return [f"cpu,host={host},region={reg} usage={v} {ts}000000\n"
            for host, reg, ts, v in events]


def accepted(node):
    with node.client(timeout=30) as c:
        r = c.request({"op": "stats"})
    return r.get("events", {}).get("accepted", 0)


def run_ndjson(node, block, repeat, conns):
    def one():
        with node.client(timeout=600) as c:
            for _ in range(repeat):
                c.send_raw(block)
            r = c.request({"op": "flush"}, timeout=600)
            if not r.get("ok") or r.get("rejected"):
                raise H.TestFailure(f"flush: {r}")
    threads = [threading.Thread(target=one) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def run_influx_tcp(node, block, repeat, conns, total):
    def one():
        s = socket.create_connection(("127.0.0.1", node.influx_port), timeout=600)
        for _ in range(repeat):
            s.sendall(block)
        s.shutdown(socket.SHUT_WR)
        s.recv(1)  # the node closes after the last chunk is processed
        s.close()
    threads = [threading.Thread(target=one) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    with node.client(timeout=30) as c:
        while True:
            r = c.request({"op": "stats"})
            if r.get("events", {}).get("accepted", 0) >= total:
                break
            time.sleep(0.005)
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    return elapsed


def run_influx_http(node, bodies, repeat, conns):
    def one():
        c = http.client.HTTPConnection("127.0.0.1", node.http_port, timeout=600)
        for _ in range(repeat):
            for b in bodies:
                c.request("POST", "/write", body=b)
                r = c.getresponse()
                r.read()
                if r.status != 204:
                    raise H.TestFailure(f"POST /write: {r.status}")
        c.close()
    threads = [threading.Thread(target=one) for _ in range(conns)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin-dir", required=True)
    ap.add_argument("--source-dir", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--series", type=int, default=1000)
    ap.add_argument("--block", type=int, default=100_000)
    ap.add_argument("--repeat", type=int, default=10)
    ap.add_argument("--connections", type=int, default=2)
    ap.add_argument("--body-lines", type=int, default=5000)
    ap.add_argument("--sync", help="cairn.storage.sync (default: in memory)")
    args = ap.parse_args()
    events = make_events(args.block, args.series, H.now_ms())
    nd = ndjson_block(events)
    lines = influx_lines(events)
    lp = "".join(lines).encode()
    bodies = ["".join(lines[i:i + args.body_lines]).encode()
              for i in range(0, len(lines), args.body_lines)]
    total = args.block * args.repeat * args.connections
    H.log(f"{total:,} events per run: {args.connections} connections x "
          f"{args.repeat} x {args.block:,}; NDJSON {len(nd) / len(events):.0f} B/event, "
          f"line protocol {len(lp) / len(events):.0f} B/event")
    extra = ([f"--cairn.storage.sync={args.sync}"] if args.sync
             else ["--cairn.storage.enabled=false"])
    kinds = ("ndjson tcp", "influx tcp", "influx http")
    results = {k: [] for k in kinds}
    for run in range(args.runs):
        for kind in kinds:
            influx_port = H.free_port()
            node = H.Node(args.bin_dir, args.source_dir, name="lp", partitions=8,
                          extra_args=extra + [f"--cairn.influx.port={influx_port}",
                                              "--cairn.log.level=warning"])
            node.influx_port = influx_port
            try:
                node.start()
                node.wait_ready(timeout=60)
                if kind == "ndjson tcp":
                    secs = run_ndjson(node, nd, args.repeat, args.connections)
                elif kind == "influx tcp":
                    secs = run_influx_tcp(node, lp, args.repeat, args.connections, total)
                else:
                    secs = run_influx_http(node, bodies, args.repeat, args.connections)
                got = accepted(node)
                if got != total:
                    raise H.TestFailure(f"{kind}: node accepted {got} of {total}")
                rate = total / secs
                results[kind].append(rate)
                H.log(f"  run {run + 1} {kind}: {rate:,.0f} ev/s ({secs:.2f} s)")
                node.terminate(60)
            finally:
                node.cleanup()
    base = statistics.median(results["ndjson tcp"])
    for kind in kinds:
        med = statistics.median(results[kind])
        H.log(f"RESULT {kind}: {med:,.0f} ev/s median "
              f"(runs {[round(x) for x in results[kind]]}) = {med / base * 100:.0f}% of NDJSON")


if __name__ == "__main__":
    main()
