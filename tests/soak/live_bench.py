#!/usr/bin/env python3
"""Live subscriptions at scale (docs/benchmarks.md, "Live subscriptions"). Not a ctest.

Starts one node, opens --clients WebSockets on /v1/live (raised open-file
limit; by default with bench/live_clients, a C++ epoll client, so that the
client costs little CPU next to the node; --client python uses --workers
processes, each a Python epoll loop over its share of the sockets),
subscribes each to one of --queries
distinct queries (bench.m<i%10>, count and p99, 1 s step), then drives
--rate events/s with cairn-bench for --duration seconds (1,000 series over
bench.m0..m9, ts = send time). For every update a client receives, the
lag is its arrival time minus (the newest window's end + cairn.live.grace),
i.e. from the moment the bucket counts as closed to delivery. Reports p50,
p99 and max lag, updates received, coalesced updates, the node's peak RSS
and CPU, the client's CPU and the load average.

  python3 tests/soak/live_bench.py --bin-dir build/apps --source-dir . \\
      --clients 10000 --rate 100000 --duration 30

Storage is off unless --storage.
"""

import argparse
import base64
import json
import multiprocessing as mp
import os
import re
import resource
import selectors
import socket
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402

T_RE = re.compile(rb'"t":(\d+)')


def ws_frame(text):
    """A masked client text frame."""
    data = text.encode()
    mask = os.urandom(4)
    head = bytes([0x81])
    n = len(data)
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack(">Q", n)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return head + mask + masked


def ws_open(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall((f"GET /v1/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise OSError("closed during the handshake")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    if b" 101 " not in head.split(b"\r\n", 1)[0]:
        raise OSError(f"handshake refused: {head[:80]!r}")
    return s, rest


def frames(buf):
    """Complete frames at the front of buf: ([(opcode, payload)], rest)."""
    out = []
    while len(buf) >= 2:
        op = buf[0] & 0x0F
        n = buf[1] & 0x7F
        pos = 2
        if n == 126:
            if len(buf) < 4:
                break
            n = struct.unpack(">H", buf[2:4])[0]
            pos = 4
        elif n == 127:
            if len(buf) < 10:
                break
            n = struct.unpack(">Q", buf[2:10])[0]
            pos = 10
        if len(buf) < pos + n:
            break
        out.append((op, buf[pos:pos + n]))
        buf = buf[pos + n:]
    return out, buf


def worker(idx, port, ids, queries, grace_ms, ready, start_ev, stop_at, results):
    resource.setrlimit(resource.RLIMIT_NOFILE, resource.getrlimit(resource.RLIMIT_NOFILE))
    sel = selectors.DefaultSelector()
    conns = {}
    failed = 0
    for i in ids:
        try:
            s, rest = ws_open(port)
        except OSError:
            failed += 1
            continue
        q = queries[i % len(queries)]
        s.sendall(ws_frame(json.dumps({"op": "subscribe", "id": i, "query": q})))
        s.setblocking(False)
        conns[s.fileno()] = [s, rest]
        sel.register(s, selectors.EVENT_READ)
    ready.put((idx, len(conns), failed))
    start_ev.wait()
    lags = []
    snapshots = 0
    updates = 0
    skip_before = None
    while True:
        now = time.time()
        if now >= stop_at.value > 0:
            break
        for key, _ in sel.select(timeout=0.2):
            entry = conns[key.fd]
            try:
                data = entry[0].recv(1 << 16)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            arrived = time.time() * 1000
            if not data:
                sel.unregister(entry[0])
                continue
            got, entry[1] = frames(entry[1] + data)
            for op, payload in got:
                if op == 0x9:  # ping -> pong
                    entry[0].sendall(bytes([0x8A, 0x80]) + os.urandom(4))
                    continue
                if op != 0x1:
                    continue
                if b'"type":"snapshot"' in payload[:80]:
                    snapshots += 1
                    continue
                ts = [int(t) for t in T_RE.findall(payload)]
                if not ts:
                    continue
                updates += 1
                newest = max(ts)
                if skip_before is None:
                    skip_before = newest + 2000  # the first windows warm up
                if newest >= skip_before:
                    lags.append((newest, arrived - (newest + 1000 + grace_ms)))
    results.put((idx, lags, snapshots, updates))
    for entry in conns.values():
        entry[0].close()


def metrics(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def proc_stat(pid):
    rss = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1]) * 1024
    return rss, H.cpu_seconds(pid)


def thread_cpu(pid):
    """{(tid, name): CPU seconds} of every thread of pid."""
    out = {}
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                text = f.read()
        except OSError:
            continue
        name = text[text.index("(") + 1:text.rindex(")")]
        fields = text.rsplit(")", 1)[1].split()
        out[(int(tid), name)] = (int(fields[11]) + int(fields[12])) / tick
    return out


def thread_wait(pid):
    """{(tid, name): seconds runnable but waiting for a CPU} (schedstat)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                out[(int(tid), name)] = int(f.read().split()[1]) / 1e9
        except (OSError, IndexError, ValueError):
            continue
    return out


def pct(xs, q):
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * (len(xs) - 1)))]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--queries", type=int, default=10)
    p.add_argument("--client", choices=["cpp", "python"], default="cpp",
                   help="cpp: bench/live_clients (default); python: --workers epoll loops")
    p.add_argument("--client-bin", default=None,
                   help="the live_clients binary (default: <bin-dir>/../bench/live_clients)")
    p.add_argument("--client-threads", type=int, default=1)
    p.add_argument("--client-poll-us", type=int, default=0,
                   help="live_clients --poll-us: each client loop sleeps this long "
                        "before each epoll_wait (included in the lag); 0 = wake per frame")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--rate", type=int, default=100000)
    p.add_argument("--duration", type=int, default=30)
    p.add_argument("--grace", type=int, default=200, help="cairn.live.grace in ms")
    p.add_argument("--group-by", default=None,
                   help="a tag to group every query by (bench series have host "
                        "h0..h99 and region): larger updates, one series per tag value")
    p.add_argument("--storage", action="store_true")
    p.add_argument("--http-io-threads", type=int, default=1)
    p.add_argument("--keep", action="store_true")
    args = p.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.clients + 200:
        sys.exit(f"open-file hard limit {hard} is too low for {args.clients} clients")
    bin_dir = os.path.abspath(args.bin_dir)
    extra = [f"--cairn.live.grace={args.grace}ms",
             f"--cairn.http.max-websockets={args.clients + 100}",
             "--cairn.http.ws-ping-interval=0",
             f"--cairn.http.io-threads={args.http_io_threads}"]
    if not args.storage:
        extra.append("--cairn.storage.enabled=false")
    node = H.Node(bin_dir, os.path.abspath(args.source_dir), name="livebench",
                  keep=args.keep, extra_args=extra)
    queries = [{"metric": f"bench.m{i % 10}", "from": "-10s",
                "aggs": ["count", "p99"] if i < 10 else ["count", "sum", "max"]}
               for i in range(args.queries)]
    if args.group_by:
        for q in queries:
            q["group_by"] = [args.group_by]
    procs = []
    bench = None
    cpp = None
    try:
        node.start()
        node.wait_ready()
        ready, results = mp.Queue(), mp.Queue()
        start_ev = mp.Event()
        stop_at = mp.Value("d", 0.0)
        t0 = time.time()
        opened = failed = 0
        if args.client == "cpp":
            qfile = os.path.join(node.tmp, "queries.ndjson")
            with open(qfile, "w") as f:
                for q in queries:
                    f.write(json.dumps(q) + "\n")
            client_bin = args.client_bin or os.path.join(bin_dir, "..", "bench", "live_clients")
            cpp = subprocess.Popen([client_bin, "--port", str(node.http_port),
                                    "--clients", str(args.clients),
                                    "--threads", str(args.client_threads),
                                    "--queries", qfile, "--grace-ms", str(args.grace),
                                    "--seconds", str(args.duration + 3),
                                    "--poll-us", str(args.client_poll_us)],
                                   stdout=subprocess.PIPE, text=True)
            words = cpp.stdout.readline().split()
            if not words or words[0] != "ready":
                sys.exit(f"live_clients did not start: {words}")
            opened, failed = int(words[1]), int(words[2])
        else:
            for w in range(args.workers):
                ids = list(range(w, args.clients, args.workers))
                pr = mp.Process(target=worker, args=(w, node.http_port, ids, queries,
                                                     args.grace, ready, start_ev, stop_at,
                                                     results))
                pr.start()
                procs.append(pr)
            for _ in procs:
                _, n, f = ready.get(timeout=600)
                opened += n
                failed += f
        H.log(f"{opened} WebSockets subscribed ({failed} failed) in {time.time() - t0:.1f}s")
        m0 = metrics(node.http_port)
        load0 = os.getloadavg()
        rss0, _ = proc_stat(node.proc.pid)
        stop_at.value = time.time() + args.duration + 3
        start_ev.set()
        bench = subprocess.Popen([os.path.join(bin_dir, "cairn-bench"), "--port",
                                  str(node.tcp_port), "--rate", str(args.rate),
                                  "--duration", str(args.duration), "--series", "1000",
                                  "--connections", "4"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        _, cpu0 = proc_stat(node.proc.pid)
        threads0 = thread_cpu(node.proc.pid)
        waits0 = thread_wait(node.proc.pid)
        client_pids = [cpp.pid] if cpp else [pr.pid for pr in procs]
        ccpu0 = sum(proc_stat(pid)[1] for pid in client_pids)
        peak = rss0
        subs = 0
        # RSS from /proc; /metrics only before and after (a scrape counts
        # the node's 10,000 open files on the HTTP I/O thread, in the way
        # of the fan-out it measures).
        while bench.poll() is None:
            time.sleep(0.5)
            rss, _ = proc_stat(node.proc.pid)
            peak = max(peak, rss)
        bench_out = bench.stdout.read()
        _, cpu1 = proc_stat(node.proc.pid)
        threads1 = thread_cpu(node.proc.pid)
        waits1 = thread_wait(node.proc.pid)
        ccpu1 = sum(proc_stat(pid)[1] for pid in client_pids)
        lags, snaps, ups, unmeasured = [], 0, 0, None
        client_cpu = ccpu1 - ccpu0
        if args.client == "cpp":
            out, _ = cpp.communicate(timeout=120)
            for line in out.splitlines():
                words = line.split()
                if words and words[0] == "lag":
                    lags.append((int(words[1]), float(words[2])))
                elif words and words[0] == "done":
                    snaps, ups = int(words[1]), int(words[2])
                    if len(words) > 4:
                        unmeasured = int(words[4])
        else:
            for _ in procs:
                _, lg, s, u = results.get(timeout=120)
                lags += lg
                snaps += s
                ups += u
            for pr in procs:
                pr.join(30)
        m1 = metrics(node.http_port)
        subs = int(m0.get("cairn_live_subscriptions", 0))
        rate_line = next((l for l in bench_out.splitlines() if "events/s" in l), bench_out[-200:])
        H.log(f"cairn-bench: {rate_line.strip()}")
        by_window = {}
        for w, lag in lags:
            by_window.setdefault(w, []).append(lag)
        lags = [lag for _, lag in lags]
        H.log("per window (start: min / p50 / max ms): " + ", ".join(
            f"{w % 100000 // 1000}: {min(v):.0f}/{pct(v, 0.5):.0f}/{max(v):.0f}"
            for w, v in sorted(by_window.items())))
        H.log(f"clients {opened}, distinct queries {subs}, "
              f"snapshots {snaps}, updates received {ups}, "
              f"clients without a measured update {unmeasured}")
        H.log(f"lag from window end + grace to receipt: p50 {pct(lags, 0.5):.1f} ms, "
              f"p99 {pct(lags, 0.99):.1f} ms, max {max(lags) if lags else float('nan'):.1f} ms "
              f"over {len(lags)} updates")
        H.log(f"coalesced {m1.get('cairn_live_coalesced_total', 0) - m0.get('cairn_live_coalesced_total', 0):.0f}, "
              f"node RSS {rss0 >> 20} MiB subscribed, peak {peak >> 20} MiB; node CPU "
              f"{cpu1 - cpu0:.1f}s in {args.duration}s; client CPU {client_cpu:.1f}s "
              f"; load average before {load0[0]:.2f}, after {os.getloadavg()}")
        busy = sorted(((v - threads0.get(k, 0.0), k) for k, v in threads1.items()),
                      reverse=True)
        H.log("node threads (CPU s in the run): " + ", ".join(
            f"{name}/{tid} {cpu:.2f}" for cpu, (tid, name) in busy if cpu >= 0.05))
        H.log("node threads (s runnable, waiting for a CPU): " + ", ".join(
            f"{name}/{tid} {waits1.get((tid, name), 0) - waits0.get((tid, name), 0):.2f}"
            for cpu, (tid, name) in busy if cpu >= 0.05))
    finally:
        if bench and bench.poll() is None:
            bench.kill()
        if cpp and cpp.poll() is None:
            cpp.kill()
        for pr in procs:
            if pr.is_alive():
                pr.kill()
        node.terminate(20)
        if not args.keep:
            node.cleanup()


if __name__ == "__main__":
    main()
