#!/usr/bin/env python3
"""Idle and slow connections (issue 9, item 7).

A node with small timeouts (1 s): an idle NDJSON connection is closed; a slow
sender whose line does not complete within cairn.tcp.line-timeout gets one
`timeout` error line and is closed, and the complete lines it sent before are
counted; an active client is served throughout. With max-connections
exhausted by idle connections, a new client gets in once they time out (no
lock-out). HTTP: an idle connection, an idle keep-alive connection and a
slow header are closed; an active keep-alive client keeps working.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

TIMEOUT_S = 1.0


def closed_within(sock, seconds):
    """True if the peer closes `sock` within `seconds` (data is discarded)."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            return False
        except OSError:
            return True
        if not data:
            return True
    return False


def query(node, obj):
    with node.client(timeout=10) as c:
        return c.request(obj, timeout=10)


def check_tcp(node, chk):
    idle = node.client(timeout=5)
    slow = node.client(timeout=5)
    active = node.client(timeout=5)
    now = h.now_ms()
    events = [{"metric": "to.slow", "ts": now - i, "value": i} for i in range(50)]
    slow.send_lines(events)
    slow.send_raw(b'{"metric":"to.slow","value":')
    t0 = time.time()
    for _ in range(8):  # 2.4 s: the slow line dribbles, the active one pings
        r = active.request({"op": "ping"}, timeout=5)
        chk.check(r.get("ok") is True, f"active client not served: {r}")
        try:
            slow.send_raw(b" ")
        except OSError:
            pass
        time.sleep(0.3)
    try:
        line = slow.read_json(timeout=3)
        chk.check((line.get("error") or {}).get("code") == "timeout",
                  f"slow sender: expected a timeout error line, got {line}")
    except (OSError, TimeoutError, ValueError) as e:
        chk.check(False, f"slow sender: no timeout line: {e}")
    chk.check(closed_within(slow.sock, 3), "slow sender was not closed")
    chk.check(closed_within(idle.sock, 3), "idle connection was not closed")
    h.log(f"idle and slow connections closed after {time.time() - t0:.1f}s")
    # (The active client idles from here on: queries use fresh connections.)
    r = query(node, {"op": "query", "metric": "to.slow", "from": now - 60000,
                        "to": now + 1000, "step": "1h", "aggs": ["count"]})
    got = sum(p.get("count", 0) for s in r.get("series", []) for p in s["points"])
    chk.count()
    chk.check(got == len(events), f"events sent before the timeout: {got} counted, "
                                  f"{len(events)} sent")
    # Events sent on a connection that then idles are counted too.
    quiet = node.client(timeout=5)
    quiet.send_lines({"metric": "to.quiet", "ts": now - i, "value": 1} for i in range(30))
    chk.check(closed_within(quiet.sock, 4), "quiet connection was not closed")
    r = query(node, {"op": "query", "metric": "to.quiet", "from": now - 60000,
                        "to": now + 1000, "step": "1h", "aggs": ["count"]})
    got = sum(p.get("count", 0) for s in r.get("series", []) for p in s["points"])
    chk.count()
    chk.check(got == 30, f"events of a connection closed as idle: {got} counted, 30 sent")
    for c in (idle, slow, active, quiet):
        c.close()


def check_lockout(node, chk, max_conn):
    # Fill every slot with idle connections; a new client is refused until
    # they time out, then served.
    idle = [node.client(timeout=5) for _ in range(max_conn)]
    time.sleep(0.2)
    refused = None
    try:
        with node.client(timeout=5) as c:
            refused = c.read_json(timeout=3)
    except (OSError, TimeoutError, ValueError) as e:
        refused = repr(e)
    chk.check(isinstance(refused, dict) and (refused.get("error") or {}).get("code")
              == "unavailable", f"connection beyond max-connections: {refused}")
    time.sleep(TIMEOUT_S + 1.5)
    try:
        with node.client(timeout=5) as c:
            r = c.request({"op": "ping"}, timeout=5)
        chk.check(r.get("ok") is True, f"after the idle ones timed out: ping {r}")
    except (OSError, TimeoutError, ValueError) as e:
        chk.check(False, f"still locked out after the idle timeout: {e}")
    for c in idle:
        c.close()


def http_get(sock, path="/healthz"):
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    deadline = time.time() + 5
    while b"\r\n\r\n" not in data and time.time() < deadline:
        sock.settimeout(max(0.01, deadline - time.time()))
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    while len(body) < length and time.time() < deadline:
        body += sock.recv(4096)
    return head.split(b"\r\n")[0].decode()


def check_http(node, chk):
    def connect():
        return socket.create_connection(("127.0.0.1", node.http_port), timeout=5)

    idle = connect()
    keep = connect()
    status = http_get(keep)
    chk.check("200" in status, f"keep-alive: first request {status}")
    slow = connect()
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")
    active = connect()
    for _ in range(8):
        status = http_get(active)
        chk.check("200" in status, f"active keep-alive client: {status}")
        try:
            slow.sendall(b"X")
        except OSError:
            pass
        time.sleep(0.3)
    chk.check(closed_within(idle, 3), "idle HTTP connection was not closed")
    chk.check(closed_within(keep, 3), "idle keep-alive HTTP connection was not closed")
    chk.check(closed_within(slow, 3), "slow HTTP header was not cut off")
    status = http_get(active)
    chk.check("200" in status, f"active keep-alive client after the others: {status}")
    for s in (idle, keep, slow, active):
        s.close()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_timeouts")
    max_conn = 8
    extra = [f"--cairn.tcp.idle-timeout={int(TIMEOUT_S * 1000)}ms",
             f"--cairn.tcp.line-timeout={int(TIMEOUT_S * 1000)}ms",
             f"--cairn.http.idle-timeout={int(TIMEOUT_S * 1000)}ms",
             f"--cairn.http.read-timeout={int(TIMEOUT_S * 1000)}ms",
             f"--cairn.tcp.max-connections={max_conn}"]
    with h.Node(args.bin_dir, args.source_dir, name="timeouts", extra_args=extra,
                keep=args.keep) as node:
        for name, fn in [("tcp", lambda: check_tcp(node, chk)),
                         ("lock-out", lambda: check_lockout(node, chk, max_conn)),
                         ("http", lambda: check_http(node, chk))]:
            h.log(f"-- {name}")
            try:
                fn()
            except (h.TestFailure, OSError) as e:
                chk.check(False, f"{name}: {e!r}")
        code, took = node.terminate(10)
        chk.check(code == 0, f"SIGTERM: exit code {code}")
        if chk.failures:
            node.dump_log(60)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
