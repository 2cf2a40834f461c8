#!/usr/bin/env python3
"""Out of file descriptors (issue 9, item 6).

The node starts with a hard RLIMIT_NOFILE of LIMIT (preexec_fn), too low for
cairn.tcp.max-connections plus its reserve: it must clamp the connection
limit with a warning instead of running into EMFILE. Then many more NDJSON
and HTTP connections than the limit allows are opened and held. Asserted:
the extra ones are refused cleanly (`unavailable` / 503), a ping on an
existing connection is answered quickly the whole time, the node does not
spin (CPU time while flooded stays low), the log stays small, and after the
extra connections close new clients are served again.
"""

import os
import resource
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

LIMIT = 400
FLOOD_TCP = 600
FLOOD_HTTP = 300


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def open_many(port, n):
    socks, failed = [], 0
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", port), timeout=2)
            socks.append(s)
        except OSError:
            failed += 1
    return socks, failed


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_fd_limits")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = FLOOD_TCP + FLOOD_HTTP + 100
    if soft < need:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(need, hard), hard))
        except (ValueError, OSError):
            pass
    node = h.Node(args.bin_dir, args.source_dir, name="fds", keep=args.keep,
                  extra_args=["--cairn.tcp.max-connections=512"])
    node.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, LIMIT))
    flood = []
    try:
        node.start()
        node.wait_ready()
        log = node.log_text()
        chk.check("open-file limit" in log and "accepting at most" in log,
                  "no warning that max-connections was clamped to the open-file limit")
        keeper = node.client(timeout=5)
        chk.require(keeper.request({"op": "ping"}).get("ok") is True, "first ping failed")
        cpu0 = cpu_seconds(node.proc.pid)
        t0 = time.time()
        tcp_socks, tcp_failed = open_many(node.tcp_port, FLOOD_TCP)
        http_socks, http_failed = open_many(node.http_port, FLOOD_HTTP)
        flood = tcp_socks + http_socks
        h.log(f"flood: {len(tcp_socks)} NDJSON ({tcp_failed} failed), {len(http_socks)} HTTP "
              f"({http_failed} failed) connections held against a limit of {LIMIT}")
        worst = 0.0
        for _ in range(10):
            t = time.time()
            try:
                r = keeper.request({"op": "ping"}, timeout=5)
                chk.check(r.get("ok") is True, f"ping while flooded: {r}")
            except (OSError, TimeoutError, ValueError) as e:
                chk.check(False, f"ping on the existing connection while flooded: {e}")
                break
            worst = max(worst, time.time() - t)
            time.sleep(0.2)
        cpu = cpu_seconds(node.proc.pid) - cpu0
        wall = time.time() - t0
        h.log(f"while flooded: worst ping {worst * 1000:.1f} ms, node CPU {cpu:.2f}s in "
              f"{wall:.1f}s")
        chk.check(worst < 1.0, f"ping took {worst:.2f}s while flooded")
        chk.check(cpu < 0.5 * wall, f"node used {cpu:.2f}s CPU in {wall:.1f}s: spinning?")
        # The refused ones were told why.
        refused = 0
        for s in tcp_socks[-20:]:
            s.settimeout(2)
            try:
                if b"too many connections" in s.recv(4096):
                    refused += 1
            except OSError:
                pass
        chk.check(refused == 20, f"only {refused} of the last 20 NDJSON connections were "
                                 f"refused with 'too many connections'")
        for s in flood:
            s.close()
        flood = []
        time.sleep(1.5)
        for i in range(3):
            try:
                with node.client(timeout=5) as c:
                    r = c.request({"op": "ping"}, timeout=5)
                chk.check(r.get("ok") is True, f"new client after the flood: {r}")
            except (OSError, TimeoutError, ValueError) as e:
                chk.check(False, f"new client after the flood: {e}")
        size = os.path.getsize(node.log_path)
        h.log(f"log size {size} bytes")
        chk.check(size < 64 * 1024, f"log grew to {size} bytes during the flood")
        keeper.close()
        code, took = node.terminate(10)
        chk.check(code == 0, f"SIGTERM: exit code {code}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        for s in flood:
            s.close()
        if chk.failures:
            node.dump_log(40)
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
