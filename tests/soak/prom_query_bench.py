#!/usr/bin/env python3
"""Prometheus API query latency: Cairn vs VictoriaMetrics (docs/benchmarks.md).
Not a ctest.

Both get the same samples: SERIES series of `bench_lat` (tag/label
host=h0..), one sample per series every INTERVAL seconds over the last SPAN
seconds (Cairn: NDJSON `ingest` with explicit ts; VictoriaMetrics (Debian's
victoria-metrics): POST /api/v1/import/prometheus with ms timestamps). Then
`/api/v1/query_range` over the last 5 minutes of ONE series is sent N times
per round over one keep-alive HTTP connection (one request in flight) to
each server, and p50 / p99 / p99.9 are reported. The servers take turns
request by request (`--order request`, the default: a stall of the shared
machine lands on all of them alike) or round by round (`--order block`:
N queries to one server, then N to the next).
VictoriaMetrics is measured twice: as installed (its rollup result cache on)
and with `nocache=1` (every query from storage, as Cairn answers every one).
Before timing, the answers of both are compared (same timestamps, same
values).

  python3 tests/soak/prom_query_bench.py --bin-dir build/apps --source-dir . \
      --queries 2000 --rounds 3

`--also NAME=BIN_DIR` (repeatable) adds another Cairn build to the same
run (same data, answers compared, rounds interleaved), e.g. the main
branch's binary next to a branch's.
"""

import argparse
import contextlib
import http.client
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import cairn_harness as H  # noqa: E402

METRIC = "bench_lat"


def samples(series, interval_s, span_s, now_s):
    out = []
    start = now_s - span_s
    for k in range(span_s // interval_s):
        ts = (start + k * interval_s) * 1000 + 500
        for h in range(series):
            v = round(1 + ((k * 7919 + h * 104729) % 100000) / 100.0, 2)
            out.append((h, ts, v))
    return out


def fill_cairn(node, data):
    with node.client(timeout=600) as c:
        for i in range(0, len(data), 5000):
            evs = [{"metric": METRIC, "ts": ts, "value": v, "tags": {"host": f"h{h}"}}
                   for h, ts, v in data[i:i + 5000]]
            r = c.request({"op": "ingest", "events": evs}, timeout=600)
            if not r.get("ok") or r.get("rejected"):
                raise H.TestFailure(f"cairn ingest: {r}")


def fill_vm(port, data):
    body = "".join(f'{METRIC}{{host="h{h}"}} {v!r} {ts}\n' for h, ts, v in data)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/api/v1/import/prometheus", body=body.encode())
    r = conn.getresponse()
    r.read()
    if r.status not in (200, 204):
        raise H.TestFailure(f"vm import: {r.status}")
    conn.request("GET", "/internal/force_flush")
    conn.getresponse().read()
    conn.close()


class Http:
    def __init__(self, port):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path, params):
        self.conn.request("GET", path + "?" + urllib.parse.urlencode(params))
        r = self.conn.getresponse()
        body = r.read()
        return r.status, body


class RawHttp:
    """The timed client: one keep-alive connection, the request's bytes built
    once, the answer read by Content-Length or chunks and not parsed. Its own
    cost is a few tens of microseconds where http.client's is ~200, so the
    servers' differences are not buried under the client's (docs/benchmarks.md,
    "Prometheus API: a lean client")."""

    def __init__(self, port, params):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.req = (f"GET /api/v1/query_range?{urllib.parse.urlencode(params)} HTTP/1.1\r\n"
                    f"Host: 127.0.0.1:{port}\r\n\r\n").encode()
        self.buf = b""

    def _more(self):
        b = self.sock.recv(1 << 16)
        if not b:
            raise H.TestFailure("connection closed")
        self.buf += b

    def get(self):
        self.sock.sendall(self.req)
        while (end := self.buf.find(b"\r\n\r\n")) < 0:
            self._more()
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4:]
        status = int(head.split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in
                  (line.partition(":") for line in head.split("\r\n")[1:])}
        if "content-length" in fields:
            n = int(fields["content-length"])
            while len(self.buf) < n:
                self._more()
            self.buf = self.buf[n:]
        else:  # chunked: up to and including the last, empty chunk
            while (end := self.buf.find(b"\r\n0\r\n\r\n")) < 0:
                self._more()
            self.buf = self.buf[end + 7:]
        return status


def wait_http(port, path, timeout=60):
    end = time.time() + timeout
    while time.time() < end:
        try:
            st, _ = Http(port).get(path, {})
            if st == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise H.TestFailure(f"port {port}{path} not ready")


def timed(c, port):
    t = time.perf_counter()
    st = c.get()
    us = (time.perf_counter() - t) * 1e6
    if st != 200:
        raise H.TestFailure(f"port {port}: HTTP {st}")
    return us


def run(port, params, n):
    c = RawHttp(port, params)
    return [timed(c, port) for _ in range(n)]


def run_turns(targets, n):
    """n queries to each target, the targets taking turns query by query."""
    conns = [RawHttp(port, prm) for _, port, prm in targets]
    lat = {name: [] for name, _, _ in targets}
    for _ in range(n):
        for c, (name, port, _) in zip(conns, targets):
            lat[name].append(timed(c, port))
    return lat


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--series", type=int, default=100)
    p.add_argument("--interval", type=int, default=1)
    p.add_argument("--span", type=int, default=600)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--order", choices=["request", "block"], default="request",
                   help="servers take turns per request (default) or per round")
    p.add_argument("--expr", default=f'{METRIC}{{host="h7"}}')
    p.add_argument("--step", default="15")
    p.add_argument("--node-arg", action="append", default=[],
                   help="extra cairn-node option (repeatable)")
    p.add_argument("--partitions", type=int, default=8,
                   help="cairn.partitions of the node (the harness default 8)")
    p.add_argument("--also", action="append", default=[], metavar="NAME=BIN_DIR",
                   help="another cairn-node build measured in the same run (repeatable)")
    args = p.parse_args()
    if not shutil.which("victoria-metrics"):
        print("victoria-metrics not installed (Debian package victoria-metrics)")
        return 2

    now_s = int(time.time())
    data = samples(args.series, args.interval, args.span, now_s)
    tmp = tempfile.mkdtemp(prefix="cairn-prombench-")
    vm_port = H.free_ports(1)[0]
    vm = subprocess.Popen(
        ["victoria-metrics", f"-httpListenAddr=127.0.0.1:{vm_port}",
         f"-storageDataPath={tmp}/vm", "-retentionPeriod=1d", "-search.latencyOffset=0s"],
        stdout=open(f"{tmp}/vm.log", "wb"), stderr=subprocess.STDOUT)
    builds = [("cairn", args.bin_dir)]
    for spec in args.also:
        name, _, bin_dir = spec.partition("=")
        if not bin_dir:
            p.error(f"--also wants NAME=BIN_DIR, got {spec!r}")
        builds.append((f"cairn {name}", bin_dir))
    nodes = [(name, H.Node(os.path.abspath(bin_dir), os.path.abspath(args.source_dir),
                           name=f"prombench{i}", partitions=args.partitions,
                           extra_args=["--cairn.storage.enabled=false"] + args.node_arg))
             for i, (name, bin_dir) in enumerate(builds)]
    try:
        with contextlib.ExitStack() as stack:
            for _, n in nodes:
                stack.enter_context(n)
            wait_http(vm_port, "/health")
            for name, n in nodes:
                t = time.time()
                fill_cairn(n, data)
                H.log(f"{name}: {len(data)} samples in {time.time() - t:.1f}s")
            t = time.time()
            fill_vm(vm_port, data)
            H.log(f"victoria-metrics: {len(data)} samples in {time.time() - t:.1f}s")
            time.sleep(2)
            end = now_s - 5
            params = {"query": args.expr, "start": end - 300, "end": end,
                      "step": args.step}
            # Same answer from both before timing.
            answers = []
            for port in [n.http_port for _, n in nodes] + [vm_port]:
                st, body = Http(port).get("/api/v1/query_range", params)
                j = json.loads(body)
                answers.append([(s["metric"].get("host"), s["values"])
                                for s in j["data"]["result"]])
            for (name, _), a in zip(nodes, answers):
                if a != answers[-1]:
                    raise H.TestFailure(f"answers differ:\n {name} {str(a)[:400]}\n"
                                        f" vm    {str(answers[-1])[:400]}")
            H.log(f"same answer: {sum(len(v) for _, v in answers[0])} points "
                  f"for {args.expr} over 5 minutes, step {args.step}s")
            targets = [(name, n.http_port, params) for name, n in nodes]
            targets += [("victoria-metrics", vm_port, params),
                        ("victoria-metrics nocache=1", vm_port, dict(params, nocache=1))]
            lat = {name: [] for name, _, _ in targets}
            pids = {name: n.proc.pid for name, n in nodes}
            pids["victoria-metrics (both)"] = vm.pid
            cpu = {name: 0.0 for name in pids}
            for name, port, prm in targets:  # warm-up
                run(port, prm, 100)
            for _ in range(args.rounds):
                if args.order == "request":
                    before = {name: H.cpu_seconds(pid) for name, pid in pids.items()}
                    for name, xs in run_turns(targets, args.queries).items():
                        lat[name] += xs
                    for name, pid in pids.items():
                        cpu[name] += H.cpu_seconds(pid) - before[name]
                    continue
                for name, port, prm in targets:
                    owner = name if name in pids else "victoria-metrics (both)"
                    before = H.cpu_seconds(pids[owner])
                    lat[name] += run(port, prm, args.queries)
                    cpu[owner] += H.cpu_seconds(pids[owner]) - before
            print(f"\nquery_range {args.expr} 5m step {args.step}s, "
                  f"{args.rounds}x{args.queries} queries, one connection per server, "
                  f"turns per {args.order}")
            print(f"{'server':30} {'p50 us':>9} {'p99 us':>9} {'p99.9 us':>9} {'mean us':>9}")
            for name, xs in lat.items():
                print(f"{name:30} {pct(xs, 0.5):9.0f} {pct(xs, 0.99):9.0f} "
                      f"{pct(xs, 0.999):9.0f} {statistics.mean(xs):9.0f}")
            for name, secs in cpu.items():
                queries = args.rounds * args.queries * (2 if name.startswith("victoria") else 1)
                print(f"{name}: server CPU {secs * 1e6 / queries:.0f} us "
                      f"per query (/proc/<pid>/stat, {queries} queries)")
            # How the node served them: inline on the HTTP thread, or as
            # requests after a busy partition (docs/prometheus-api.md,
            # "Latency"); builds without inline reads show none.
            for name, n in nodes:
                st, body = Http(n.http_port).get("/metrics", {})
                inline = [line for line in body.decode().splitlines()
                          if line.startswith("cairn_prometheus_inline_reads_total")]
                print(f"{name}: {', '.join(inline) if inline else 'no inline reads metric'}")
    finally:
        vm.terminate()
        try:
            vm.wait(timeout=10)
        except subprocess.TimeoutExpired:
            vm.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
