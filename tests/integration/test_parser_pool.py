"""The parser pool sized by load (cairn.ingest.parsers = auto, the default;
docs/architecture.md, "Ingest path"), against a real node and cairn-bench:

1. the pool starts with one parser per core and, idle, shrinks to one;
   `stats` says so (mode, count, bounds, resizes);
2. under fire-and-forget load at full speed the pool grows to one parser
   per core (on a machine with more than one) and every event is applied;
3. acknowledged requests at a moderate rate right after: the pool shrinks
   back while requests are in flight, and every request is answered and
   every event applied exactly once (the retiring parser finishes what it
   holds);
4. a fixed count (`--cairn.ingest.parsers=3`) is kept and shown as fixed.
"""

import json
import os
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def stats(node):
    with node.client(10) as c:
        return c.request({"op": "stats"}, 10)


def bench(node, *args):
    cmd = [os.path.join(node.bin_dir, "cairn-bench"), "--port", str(node.tcp_port),
           "--json", *map(str, args)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise h.TestFailure(f"cairn-bench failed: {r.stdout[-300:]} {r.stderr[-300:]}")


class Watch(threading.Thread):
    """Samples stats.parsers every 100 ms until stopped."""

    def __init__(self, node):
        super().__init__(daemon=True)
        self.node = node
        self.counts = []
        self.stop_flag = threading.Event()

    def run(self):
        while not self.stop_flag.is_set():
            try:
                self.counts.append(stats(self.node)["parsers"]["count"])
            except (OSError, TimeoutError, ValueError, KeyError):
                pass
            time.sleep(0.1)


def applied_becomes(node, want, timeout=20):
    deadline = time.time() + timeout
    got = None
    while time.time() < deadline:
        got = stats(node).get("events_applied")
        if got == want:
            return got
        time.sleep(0.2)
    return got


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_parser_pool")
    cores = os.cpu_count() or 1
    node = h.Node(args.bin_dir, args.source_dir, name="pool", keep=args.keep,
                  extra_args=["--cairn.storage.sync=never"])
    try:
        node.start()
        node.wait_ready()
        deadline = time.time() + 10
        p = stats(node)["parsers"]
        while p["count"] != 1 and time.time() < deadline:
            time.sleep(0.2)
            p = stats(node)["parsers"]
        chk.check(p == {"mode": "auto", "count": 1, "min": 1, "max": min(cores, 256),
                        "resizes": max(cores, 1) - 1},
                  f"idle: down to one parser, auto: {p}")

        # -- 2. full speed: grows --------------------------------------------
        w = Watch(node)
        w.start()
        r = bench(node, "--mode", "ff", "--connections", 2, "--duration", 3,
                  "--series", 1000, "--ts-spread", "60s", "--value-spread", 5)
        w.stop_flag.set()
        w.join()
        sent = r["events_sent"]
        h.log(f"ff: {r['accepted_per_second']:,.0f} ev/s, parsers seen {sorted(set(w.counts))}")
        chk.check(r["accepted"] == sent and not r["errors"], f"ff: all accepted: {r}")
        if cores > 1:
            chk.check(max(w.counts, default=0) >= 2,
                      f"full speed grows the pool: {w.counts}")
        else:
            chk.note("one core: the pool cannot grow")
        got = applied_becomes(node, sent)
        chk.check(got == sent, f"every ff event applied: {got} of {sent}")

        # -- 3. moderate acknowledged load: shrinks with requests in flight --
        before = stats(node)["parsers"]
        w = Watch(node)
        w.start()
        r2 = bench(node, "--mode", "ack", "--batch", 500, "--rate", 100000,
                   "--connections", 2, "--duration", 5, "--series", 1000,
                   "--ts-spread", "60s")
        w.stop_flag.set()
        w.join()
        after = stats(node)["parsers"]
        h.log(f"ack at 100k/s: parsers {before['count']} -> {after['count']}, "
              f"seen {w.counts[:5]}...{w.counts[-5:]}, resizes "
              f"{before['resizes']} -> {after['resizes']}, "
              f"p99 {r2['ack_latency_ms']['p99']} ms")
        chk.check(r2["accepted"] == r2["events_sent"] and not r2["errors"]
                  and not r2["failures"] and r2["error_replies"] == 0,
                  f"ack: every request answered, every event accepted: {r2}")
        if cores > 1 and before["count"] > 1:
            chk.check(after["count"] == 1 and after["resizes"] > before["resizes"],
                      f"a moderate load shrinks the pool: {before} -> {after}")
        got = applied_becomes(node, sent + r2["events_sent"])
        chk.check(got == sent + r2["events_sent"],
                  f"every event applied once: {got} of {sent + r2['events_sent']}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if chk.failures:
            node.dump_log(60)
        node.cleanup()

    # -- 4. a fixed count ------------------------------------------------------
    node = h.Node(args.bin_dir, args.source_dir, name="pool3", keep=args.keep,
                  extra_args=["--cairn.storage.enabled=false", "--cairn.ingest.parsers=3"])
    try:
        node.start()
        node.wait_ready()
        r = bench(node, "--mode", "ff", "--connections", 2, "--duration", 1)
        p = stats(node)["parsers"]
        chk.check(p == {"mode": "fixed", "count": 3, "min": 3, "max": 3, "resizes": 0},
                  f"fixed: three parsers after load: {p}")
        got = applied_becomes(node, r["events_sent"])
        chk.check(got == r["events_sent"], f"fixed pool: every event applied: {got}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
