"""Shared harness for Cairn's black-box integration tests.

The tests start the real `cairn-node` binary on free loopback ports and talk
the NDJSON-over-TCP protocol of docs/protocol.md over real sockets. Standard
library only (the tests run wherever Python 3 runs, no pip).

Pieces:
  * `parse_args()`        -- the common --bin-dir / --source-dir arguments.
  * `free_ports(n)`       -- n distinct free loopback ports (bind port 0).
  * `Node`                -- one cairn-node process: start, wait for ping
                             "ready", stop with SIGTERM (exit code asserted)
                             or SIGKILL, log captured to a file and printed
                             when a test fails.
  * `Client`              -- one TCP connection: send lines, read reply lines
                             with timeouts, request(obj) -> dict, pipelining.
  * `Reference`           -- the query semantics of docs/protocol.md in Python
                             (buckets, points, where/group_by, every agg,
                             exact lower-rank quantiles), used as the oracle.
  * `Checker`             -- collects failures instead of stopping at the
                             first, counts compared values, prints a summary.
"""

import argparse
import json
import math
import os
import shutil
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

# Relative accuracy of the node's DDSketch is 1 % by default; allow a little
# floating-point slack on top (the brief's 0.011).
QUANTILE_REL_TOL = 0.011
# Magnitudes below this count as zero in the sketch (ddsketch min_indexable).
SKETCH_ZERO = 1e-9
# Sums differ in summation order between partitions; compare relative to the
# sum of magnitudes so cancelling positive/negative values stay comparable.
SUM_REL_TOL = 1e-9

DEFAULT_READY_TIMEOUT = 30.0
DEFAULT_STOP_TIMEOUT = 10.0


# -- command line -------------------------------------------------------------

def parse_args(description=""):
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--bin-dir", required=True,
                   help="directory holding cairn-node, cairn-cli, cairn-bench")
    p.add_argument("--source-dir", required=True,
                   help="the source tree (configs/ lives there)")
    p.add_argument("--keep", action="store_true",
                   help="keep temporary directories and logs")
    p.add_argument("--verbose", action="store_true")
    args = p.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.source_dir = os.path.abspath(args.source_dir)
    return args


def now_ms():
    return int(time.time() * 1000)


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        # fields[11], fields[12]: utime, stime (clock ticks), after the ')'.
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def log(msg):
    print(msg, flush=True)


# -- ports --------------------------------------------------------------------

def _ephemeral_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
            return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


# Ports below the kernel's ephemeral range: a port picked here cannot be taken
# by a socket some node binds to port 0 between the pick and that node's start
# (the cluster TLS tunnels listen on ephemeral loopback ports). The ranges other
# engineers' tools use on this machine are left out.
_AVOID = [(7400, 7800), (23000, 23100)]


def ephemeral_low():
    return _ephemeral_range()[0]


def _pickable(port):
    return not any(lo <= port <= hi for lo, hi in _AVOID)


_GIVEN = set()  # every port free_ports returned in this process


def free_ports(n):
    """Returns n distinct free loopback ports below the ephemeral range, none
    returned before by this process: the nodes of a cluster choose their
    ports one after the other and bind them only when started, so a port
    free now may already be another node's."""
    lo, _ = _ephemeral_range()
    low_end = 10000 if lo > 12000 else 1024
    rng = random.SystemRandom()
    socks = []
    try:
        while len(socks) < n:
            port = rng.randrange(low_end, lo)
            if not _pickable(port) or port in _GIVEN:
                continue
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                s.close()
                continue
            socks.append(s)
            _GIVEN.add(port)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def free_port():
    return free_ports(1)[0]


def port_block_free(base, offsets):
    """True if every port base+offset can be bound on loopback now."""
    socks = []
    try:
        for off in offsets:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", base + off))
            socks.append(s)
        return True
    except OSError:
        return False
    finally:
        for s in socks:
            s.close()


def free_base(offsets):
    """A base port with every base+offset free, away from ports others use."""
    for _ in range(200):
        base = free_port() // 100 * 100
        if base < 10000 or base + max(offsets) >= ephemeral_low():
            continue
        if port_block_free(base, offsets):
            return base
    raise TestFailure("no free port block")


# -- failures -----------------------------------------------------------------


class TestFailure(Exception):
    pass


class Checker:
    """Collects check results. `check` records a failure and continues, so one
    run reports every deviation; `require` raises (for preconditions)."""

    def __init__(self, name, max_print=60):
        self.name = name
        self.failures = []
        self.notes = []
        self.compared = 0
        self.checks = 0
        self.max_print = max_print

    def check(self, cond, msg):
        self.checks += 1
        if not cond:
            self.failures.append(msg)
            if len(self.failures) <= self.max_print:
                log("  FAIL: " + msg)
            elif len(self.failures) == self.max_print + 1:
                log("  (further failures not printed individually)")
        return bool(cond)

    def require(self, cond, msg):
        if not self.check(cond, msg):
            raise TestFailure(msg)

    def note(self, msg):
        self.notes.append(msg)
        log("  NOTE: " + msg)

    def count(self, n=1):
        self.compared += n

    def summary(self):
        log("")
        log("=" * 72)
        log(f"{self.name}: {self.checks} checks, {self.compared} values compared, "
            f"{len(self.failures)} failures, {len(self.notes)} notes")
        for n in self.notes:
            log("  note: " + n)
        if self.failures:
            log("failures (first 100):")
            for f in self.failures[:100]:
                log("  - " + f)
        # A run that checked nothing proves nothing: it fails.
        empty = self.checks == 0 and self.compared == 0
        if empty:
            log("  - nothing was checked or compared")
        ok = not self.failures and not empty
        log("RESULT: " + ("PASS" if ok else "FAIL"))
        log("=" * 72)
        return 0 if ok else 1


# -- the node process ---------------------------------------------------------

class Node:
    """One cairn-node process on free loopback ports.

    `config` defaults to SRC/configs/single.ini. `base_args=False` drops the
    harness's default --cairn.partitions / --cairn.log.level overrides (the
    config test wants the file's own values). `extra_args` come last so they
    win over everything else.
    """

    def __init__(self, bin_dir, source_dir, name="t1", config=None,
                 extra_args=(), partitions=8, base_args=True, keep=False,
                 storage_dir=None):
        self.bin_dir = bin_dir
        self.source_dir = source_dir
        self.name = name
        self.config = config or os.path.join(source_dir, "configs", "single.ini")
        self.extra_args = list(extra_args)
        self.partitions = partitions
        self.base_args = base_args
        self.keep = keep
        self.tmp = tempfile.mkdtemp(prefix=f"cairn-it-{name}-")
        self.storage = storage_dir or os.path.join(self.tmp, "data")
        self.log_path = os.path.join(self.tmp, "node.log")
        self.tcp_port, self.http_port, self.cluster_port = free_ports(3)
        self.proc = None
        self._log_file = None
        self.preexec_fn = None
        # An ssl.SSLContext when the node's NDJSON port speaks TLS
        # (cairn.tcp.tls-*): wait_ready and client() then use it.
        self.tls_context = None

    @property
    def binary(self):
        return os.path.join(self.bin_dir, "cairn-node")

    def command(self):
        cmd = [self.binary,
               f"--config-file={self.config}",
               f"--cairn.node-name={self.name}",
               f"--cairn.tcp.port={self.tcp_port}",
               f"--cairn.http.port={self.http_port}",
               f"--cairn.cluster.port={self.cluster_port}",
               f"--cairn.storage.path={self.storage}"]
        if self.base_args:
            cmd += [f"--cairn.partitions={self.partitions}",
                    "--cairn.log.level=info"]
        return cmd + self.extra_args

    def start(self):
        if not os.path.exists(self.binary):
            raise TestFailure(f"binary not found: {self.binary}")
        self._log_file = open(self.log_path, "ab")
        cmd = self.command()
        self._log_file.write(("$ " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        # preexec_fn: set by tests that need e.g. a low RLIMIT_NOFILE.
        self.proc = subprocess.Popen(cmd, stdout=self._log_file,
                                     stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=self.tmp,
                                     preexec_fn=self.preexec_fn)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_ready(self, timeout=DEFAULT_READY_TIMEOUT, want_status="ready"):
        """Polls {"op":"ping"} until it answers with status `want_status`
        (any ok reply if want_status is None). Returns the ping reply."""
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            if not self.alive():
                raise TestFailure(
                    f"cairn-node exited with code {self.proc.returncode} "
                    f"before becoming ready")
            try:
                with Client("127.0.0.1", self.tcp_port, timeout=2.0,
                            ssl_context=self.tls_context) as c:
                    last = c.request({"op": "ping"}, timeout=2.0)
                    if last.get("ok") is True and (
                            want_status is None or last.get("status") == want_status):
                        return last
            except (OSError, TimeoutError, ValueError) as e:
                last = repr(e)
            time.sleep(0.1)
        raise TestFailure(f"node not ready after {timeout}s; last ping: {last!r}")

    def client(self, timeout=30.0):
        return Client("127.0.0.1", self.tcp_port, timeout=timeout,
                      ssl_context=self.tls_context)

    def terminate(self, timeout=DEFAULT_STOP_TIMEOUT):
        """SIGTERM, wait up to `timeout` s. Returns (exit code or None if it
        did not exit, seconds taken). Kills the process if it hangs."""
        if self.proc is None:
            return (None, 0.0)
        if self.proc.poll() is not None:
            return (self.proc.returncode, 0.0)
        t0 = time.time()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            return (None, time.time() - t0)
        return (code, time.time() - t0)

    def stop(self, timeout=DEFAULT_STOP_TIMEOUT):
        """SIGTERM and assert exit code 0 within `timeout` s."""
        code, took = self.terminate(timeout)
        if code is None:
            raise TestFailure(f"cairn-node did not exit within {timeout}s of SIGTERM")
        if code != 0:
            raise TestFailure(f"cairn-node exited with code {code} after SIGTERM")
        return took

    def kill(self):
        if self.alive():
            self.proc.kill()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass

    def log_text(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def dump_log(self, tail_lines=200):
        text = self.log_text().splitlines()
        log(f"----- cairn-node log ({self.log_path}), last {tail_lines} lines -----")
        for line in text[-tail_lines:]:
            log("  | " + line)
        log("----- end of log -----")

    def cleanup(self):
        self.kill()
        if self._log_file:
            self._log_file.close()
            self._log_file = None
        if not self.keep:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self):
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.dump_log()
            self.cleanup()
            raise
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None:
            self.dump_log()
        self.cleanup()
        return False


# -- the client ---------------------------------------------------------------

def encode(obj):
    """One NDJSON line (bytes, with the newline) for a dict / str / bytes."""
    if isinstance(obj, bytes):
        data = obj
    elif isinstance(obj, str):
        data = obj.encode("utf-8")
    else:
        data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()
    return data if data.endswith(b"\n") else data + b"\n"


class Client:
    """One NDJSON connection with buffered, time-limited reads."""

    def __init__(self, host, port, timeout=30.0, ssl_context=None):
        self.timeout = timeout
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            # TLS (docs/operations.md, "TLS"): the handshake runs here; the
            # certificate must name `host`.
            try:
                self.sock = ssl_context.wrap_socket(self.sock, server_hostname=host)
            except BaseException:
                self.sock.close()
                raise
        self.buf = b""
        self.closed_by_peer = False

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- sending --
    def send_raw(self, data):
        self.sock.sendall(data)

    def send_line(self, obj):
        self.sock.sendall(encode(obj))

    def send_lines(self, objs, chunk_bytes=256 * 1024):
        """Sends many lines with few syscalls."""
        parts, size = [], 0
        for o in objs:
            b = encode(o)
            parts.append(b)
            size += len(b)
            if size >= chunk_bytes:
                self.sock.sendall(b"".join(parts))
                parts, size = [], 0
        if parts:
            self.sock.sendall(b"".join(parts))

    # -- receiving --
    def read_line(self, timeout=None):
        """Returns the next reply line (bytes, without the newline). Raises
        TimeoutError if none arrives in time, ConnectionError on EOF."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.time() + timeout
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 1:]
                if line.endswith(b"\r"):
                    line = line[:-1]
                return line
            left = deadline - time.time()
            if left <= 0:
                raise TimeoutError(f"no reply line within {timeout}s "
                                   f"(buffered: {self.buf[:200]!r})")
            self.sock.settimeout(left)
            try:
                data = self.sock.recv(1 << 16)
            except socket.timeout:
                raise TimeoutError(f"no reply line within {timeout}s "
                                   f"(buffered: {self.buf[:200]!r})")
            if not data:
                self.closed_by_peer = True
                raise ConnectionError(f"connection closed by the node "
                                      f"(buffered: {self.buf[:200]!r})")
            self.buf += data

    def read_json(self, timeout=None):
        line = self.read_line(timeout)
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise ValueError(f"reply is not JSON: {line[:300]!r}: {e}")
        if not isinstance(obj, dict):
            raise ValueError(f"reply is not a JSON object: {line[:300]!r}")
        return obj

    def read_n(self, n, timeout=None):
        return [self.read_json(timeout) for _ in range(n)]

    def request(self, obj, timeout=None):
        self.send_line(obj)
        return self.read_json(timeout)

    def pipeline(self, objs, window=16, timeout=None):
        """Sends every request with at most `window` unanswered at a time and
        returns the replies in order (one reply per request)."""
        replies = []
        objs = list(objs)
        sent = 0
        while len(replies) < len(objs):
            while sent < len(objs) and sent - len(replies) < window:
                self.send_line(objs[sent])
                sent += 1
            replies.append(self.read_json(timeout))
        return replies

    def expect_silence(self, seconds=0.3):
        """Returns any reply lines that arrive within `seconds` (expecting
        none)."""
        got = []
        end = time.time() + seconds
        while time.time() < end:
            try:
                got.append(self.read_line(max(0.01, end - time.time())))
            except TimeoutError:
                break
        return got


class Session:
    """A request/reply helper for test phases: on a transport error (timeout,
    closed connection, non-JSON reply) it records a failure in `chk`,
    reconnects, and returns {} so the test goes on with the next request."""

    def __init__(self, node, chk, timeout=60.0):
        self.node, self.chk, self.timeout = node, chk, timeout
        self.client = None

    def request(self, obj, timeout=None):
        try:
            if self.client is None:
                self.client = self.node.client(self.timeout)
            return self.client.request(obj, timeout)
        except (OSError, TimeoutError, ValueError) as e:
            self.chk.check(False, f"request {json.dumps(obj)[:200]}: {e} "
                                  f"(node alive: {self.node.alive()})")
            if self.client is not None:
                self.client.close()
            self.client = None
            return {}

    def close(self):
        if self.client is not None:
            self.client.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
        return False


# -- reference aggregation model ----------------------------------------------

def floor_div(a, b):
    return (a // b) * b  # Python's // floors for negatives too


def parse_quantile(agg):
    """'p99.9' -> 0.999 computed like a C++ parser would (text / 100)."""
    if len(agg) >= 2 and agg[0] == "p":
        try:
            return float(agg[1:]) / 100.0
        except ValueError:
            return None
    return None


class Group:
    __slots__ = ("ts_values",)

    def __init__(self):
        self.ts_values = []  # (ts, value)


def lower_rank_candidates(q, n):
    """The rank floor(q*(n-1)); if q*(n-1) lies just below an integer by
    float noise, that integer is acceptable too."""
    x = q * (n - 1)
    ranks = {int(math.floor(x))}
    if abs(x - round(x)) < 1e-9:
        ranks.add(int(round(x)))  # e.g. 0.29*100 = 28.999999999999996
    return sorted(max(0, min(n - 1, r)) for r in ranks)


class Reference:
    """The query semantics of docs/protocol.md over a list of events.

    An event is a dict {"metric","ts","value","tags"} with every field
    present (the generator fills defaults itself)."""

    def __init__(self, events=()):
        self.by_metric = {}
        for e in events:
            self.add(e)

    def add(self, e):
        self.by_metric.setdefault(e["metric"], []).append(
            (e["ts"], e["value"], e.get("tags") or {}))

    @staticmethod
    def _matches(tags, where):
        return all(tags.get(k) == v for k, v in (where or {}).items())

    def points(self, metric, frm, to, step, res, where=None, group_by=None):
        """{group key tuple: {t: [(ts, value), ...]}} exactly as the doc says:
        bucket = floor(ts/res)*res, bucket start in [from, to), point
        t = floor(bucket/step)*step."""
        group_by = group_by or []
        out = {}
        for ts, value, tags in self.by_metric.get(metric, ()):
            if not self._matches(tags, where):
                continue
            b = floor_div(ts, res)
            if not (frm <= b < to):
                continue
            t = floor_div(b, step)
            key = tuple(tags.get(g) for g in group_by)
            out.setdefault(key, {}).setdefault(t, []).append((ts, value))
        return out

    @staticmethod
    def finalize(agg, tvs, step):
        """Exact value of `agg` over the (ts, value) list. Quantiles return the
        sorted values (the comparison picks the rank)."""
        vals = [v for _, v in tvs]
        n = len(vals)
        if agg == "count":
            return n
        if agg == "sum":
            return math.fsum(vals)
        if agg == "min":
            return min(vals)
        if agg == "max":
            return max(vals)
        if agg == "avg":
            return math.fsum(vals) / n
        if agg == "last":
            return max(tvs, key=lambda tv: tv[0])[1]
        if agg == "rate":
            return n / (step / 1000.0)
        if parse_quantile(agg) is not None:
            return sorted(vals)
        raise ValueError("unknown agg " + agg)

    def query(self, metric, frm, to, step, res, aggs, where=None, group_by=None):
        """Returns the expected reply 'series' list: [{"tags":{...},
        "points":[{"t":..., agg: exact}]}] sorted like the doc says; for
        quantile aggs the value is ("sorted", [values]) for compare_agg."""
        group_by = group_by or []
        pts = self.points(metric, frm, to, step, res, where, group_by)
        series = []
        for key in sorted(pts, key=group_sort_key):
            tags = {g: v for g, v in zip(group_by, key) if v is not None}
            points = []
            for t in sorted(pts[key]):
                tvs = pts[key][t]
                p = {"t": t, "_abs": math.fsum(abs(v) for _, v in tvs), "_n": len(tvs)}
                for a in aggs:
                    p[a] = self.finalize(a, tvs, step)
                points.append(p)
            series.append({"tags": tags, "points": points})
        return series

    def topk_values(self, metric, by, agg, frm, to, res, where=None):
        """{tag value: (exact agg or sorted list for quantiles, abs sum)} over
        the events whose bucket start is in [from, to)."""
        groups = {}
        for ts, value, tags in self.by_metric.get(metric, ()):
            if not self._matches(tags, where) or by not in tags:
                continue
            b = floor_div(ts, res)
            if frm <= b < to:
                groups.setdefault(tags[by], []).append((ts, value))
        # rate over a topk range has no step; it is not used by the tests.
        return {tv: (self.finalize(agg, l, to - frm), math.fsum(abs(v) for _, v in l), len(l))
                for tv, l in groups.items()}

    def series_set(self, metric=None, where=None):
        out = set()
        for m, evs in self.by_metric.items():
            if metric is not None and m != metric:
                continue
            for _, _, tags in evs:
                if self._matches(tags, where):
                    out.add((m, tuple(sorted(tags.items()))))
        return out

    def metrics(self):
        return {m: len(self.series_set(m)) for m in self.by_metric}


def group_sort_key(key):
    """Sort groups by their tag values; an absent tag sorts first."""
    return tuple((0, "") if v is None else (1, v) for v in key)


def quantile_ok(q, sorted_vals, got):
    """True if `got` is within the sketch's relative accuracy of the exact
    lower-rank quantile (value at rank floor(q*(n-1)))."""
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        return False
    n = len(sorted_vals)
    for r in lower_rank_candidates(q, n):
        exact = sorted_vals[r]
        if abs(exact) < SKETCH_ZERO:
            if abs(got) <= SKETCH_ZERO:
                return True
        elif abs(got - exact) <= QUANTILE_REL_TOL * abs(exact):
            return True
    return False


def compare_agg(agg, exact, got, abs_sum=0.0, n=1):
    """Compares one aggregate value. Returns (ok, description of expected)."""
    if got is None or isinstance(got, bool) or not isinstance(got, (int, float)):
        return False, repr(exact if agg != "sorted" else "?")
    q = parse_quantile(agg)
    if q is not None:
        n = len(exact)
        ranks = lower_rank_candidates(q, n)
        return quantile_ok(q, exact, got), f"~{[exact[r] for r in ranks]} (n={n})"
    if agg == "count":
        return got == exact and float(got).is_integer(), repr(exact)
    if agg in ("min", "max", "last"):
        return got == exact, repr(exact)
    if agg in ("sum", "avg"):
        scale = max(abs(exact), abs_sum if agg == "sum" else abs_sum / max(n, 1))
        return abs(got - exact) <= SUM_REL_TOL * scale + 1e-12, repr(exact)
    if agg == "rate":
        return abs(got - exact) <= 1e-9 * max(1.0, abs(exact)), repr(exact)
    return got == exact, repr(exact)


def compare_series(chk, label, expected, got_reply, aggs, group_by=None):
    """Compares a query reply's 'series' with Reference.query's output: every
    group, every point, every agg. Records failures in `chk`."""
    got = got_reply.get("series")
    if not chk.check(isinstance(got, list), f"{label}: 'series' missing or not a list: "
                                              f"{str(got_reply)[:300]}"):
        return
    exp_tags = [s["tags"] for s in expected]
    got_tags = [s.get("tags") for s in got]
    key = lambda t: json.dumps(t, sort_keys=True)
    if not chk.check(sorted(map(key, got_tags)) == sorted(map(key, exp_tags)),
                     f"{label}: groups differ: expected {len(exp_tags)} "
                     f"{exp_tags[:6]}..., got {len(got_tags)} {got_tags[:6]}..."):
        # Compare what we can: the groups both have.
        pass
    else:
        chk.check(got_tags == exp_tags,
                  f"{label}: groups not sorted by tag values: got order "
                  f"{got_tags[:8]}..., expected {exp_tags[:8]}...")
    got_by = {key(s.get("tags")): s for s in got}
    for es in expected:
        gs = got_by.get(key(es["tags"]))
        if gs is None:
            continue
        gp = gs.get("points")
        if not chk.check(isinstance(gp, list), f"{label} {es['tags']}: points not a list"):
            continue
        gts = [p.get("t") for p in gp]
        ets = [p["t"] for p in es["points"]]
        chk.check(gts == sorted(gts), f"{label} {es['tags']}: points not sorted by t")
        if not chk.check(sorted(gts) == ets,
                         f"{label} {es['tags']}: point times differ: expected "
                         f"{len(ets)} {ets[:5]}..., got {len(gts)} {sorted(gts)[:5]}... "
                         f"(missing {sorted(set(ets) - set(gts))[:5]}, extra "
                         f"{sorted(set(gts) - set(ets))[:5]})"):
            pass
        gp_by_t = {p.get("t"): p for p in gp}
        for ep in es["points"]:
            p = gp_by_t.get(ep["t"])
            if p is None:
                continue
            chk.count()  # the point's t
            for a in aggs:
                ok, desc = compare_agg(a, ep[a], p.get(a), ep["_abs"], ep["_n"])
                chk.count()
                chk.check(ok, f"{label} {es['tags']} t={ep['t']} {a}: expected {desc}, "
                              f"got {p.get(a)!r}")


# -- misc helpers -------------------------------------------------------------

def run(cmd, timeout=60, input_bytes=None, cwd=None):
    """Runs a command, returns CompletedProcess with text stdout/stderr."""
    return subprocess.run(cmd, input=input_bytes, capture_output=True,
                          timeout=timeout, cwd=cwd)


def run_bounded(cmd, timeout=10):
    """Runs a command that is expected to exit by itself; if it is still
    running after `timeout` s it is killed and returncode is None."""
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    try:
        out, err = p.communicate(timeout=timeout)
        code = p.returncode
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        code = None
    return subprocess.CompletedProcess(cmd, code, out, err)


def http_get_json(port, path, params=None, timeout=30):
    """GET http://127.0.0.1:port/path?params (list values repeat the key);
    returns (status, decoded JSON body), error statuses included."""
    url = f"http://127.0.0.1:{port}{path}?" + urllib.parse.urlencode(params or {}, doseq=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def start_prometheus(tmp, config_text, tsdb=None, extra_args=(), port=None):
    """A real `prometheus` (Debian's) on a free loopback port, with
    `config_text` as its config, its TSDB (default tmp/tsdb) and log
    (tmp/prometheus.log) in `tmp`; `port` when the config must name it.
    Returns (process, port)."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise TestFailure("prometheus not installed (scripts/install-deps.sh installs it)")
    config = os.path.join(tmp, "prometheus.yml")
    with open(config, "w") as f:
        f.write(config_text)
    port = port or free_port()
    with open(os.path.join(tmp, "prometheus.log"), "ab") as log:
        proc = subprocess.Popen(
            [binary, f"--config.file={config}",
             f"--storage.tsdb.path={tsdb or os.path.join(tmp, 'tsdb')}",
             f"--web.listen-address=127.0.0.1:{port}", *extra_args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=tmp)
    return proc, port


def stop_process(proc, timeout=20):
    """Terminates `proc` (None is fine), killing it if it does not exit in
    `timeout` seconds."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def http_request(port, method, path, body=None, headers=None, timeout=30,
                 ssl_context=None):
    """One HTTP(S) request to 127.0.0.1:port; returns (status, headers as a
    dict with lower-case names, body bytes), error statuses included. With
    `ssl_context` it is HTTPS (the certificate must name 127.0.0.1)."""
    scheme = "https" if ssl_context is not None else "http"
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(f"{scheme}://127.0.0.1:{port}{path}", data=data,
                                 method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=ssl_context) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def is_error(reply, code=None):
    if reply.get("ok") is not False or not isinstance(reply.get("error"), dict):
        return False
    return code is None or reply["error"].get("code") == code


def main_wrapper(fn):
    """Runs fn() -> exit code, turning TestFailure / exceptions into exit 1."""
    try:
        code = fn()
    except TestFailure as e:
        log(f"RESULT: FAIL ({e})")
        code = 1
    except Exception:
        import traceback
        traceback.print_exc()
        log("RESULT: FAIL (unexpected exception)")
        code = 1
    sys.exit(code)
