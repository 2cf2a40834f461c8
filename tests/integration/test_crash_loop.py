#!/usr/bin/env python3
"""Crash loop (issue 9, item 8): a node is SIGKILLed and restarted CYCLES
times while CLIENTS threads send keyed `ingest` batches of BATCH events.

Each client opens a NEW connection after every failure (no waiting for
ping "ready"), so requests land during start-up, during recovery and right
at the recovering -> ready switch. Asserted:
  * EVERY reply is either ok or error code `unavailable` (a valid ingest
    once came back `unknown_op` around the switch; a client trusting the
    code would have dropped the batch);
  * every batch is retried with the same key until acknowledged;
  * at the end the node holds exactly the acknowledged events, each once.

CAIRN_CRASH_CYCLES overrides the number of kill/restart cycles.
"""

import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402
import persistence_helpers as P  # noqa: E402

CLIENTS = 4
BATCH = 200
CYCLES = int(os.environ.get("CAIRN_CRASH_CYCLES", "20"))
METRIC = "crash.loop"


class Shared:
    def __init__(self):
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.replies = {}       # "ok" / error code -> count
        self.bad = []           # replies that are neither ok nor unavailable
        self.acked = 0          # batches acknowledged
        self.sent = 0           # batches generated
        self.requests = 0
        self.failures = 0       # connection errors / timeouts
        self.errors = []


def client(idx, node, sh, base, deadline):
    rng = random.Random(idx)
    conn = None
    n = 0
    try:
        while not sh.stop.is_set():
            key = f"c{idx}-{n}"
            n += 1
            evs = [{"metric": METRIC, "ts": base + rng.randrange(60000), "value": 1,
                    "tags": {"c": str(idx)}} for _ in range(BATCH)]
            with sh.lock:
                sh.sent += 1
            while True:
                if time.time() > deadline:
                    raise H.TestFailure(f"client {idx}: batch {key} not acknowledged in time")
                try:
                    if conn is None:
                        conn = node.client(timeout=10.0)
                    r = conn.request({"op": "ingest", "events": evs,
                                      "idempotency_key": key}, timeout=10.0)
                except (OSError, TimeoutError, ValueError):
                    with sh.lock:
                        sh.failures += 1
                    if conn is not None:
                        conn.close()
                    conn = None  # a new connection after each failure
                    time.sleep(0.01)
                    continue
                code = "ok" if r.get("ok") is True else (r.get("error") or {}).get("code")
                with sh.lock:
                    sh.requests += 1
                    sh.replies[code] = sh.replies.get(code, 0) + 1
                    if code not in ("ok", "unavailable"):
                        sh.bad.append(str(r)[:300])
                if code == "ok":
                    with sh.lock:
                        sh.acked += 1
                    break
                time.sleep(0.005)
    except H.TestFailure as e:
        with sh.lock:
            sh.errors.append(str(e))
    finally:
        if conn is not None:
            conn.close()


def main():
    args = H.parse_args(__doc__)
    chk = H.Checker("crash loop")
    rng = random.Random(int(os.environ.get("CAIRN_CHAOS_SEED", "9")))
    deadline = time.time() + 150
    base = (H.now_ms() // 60000) * 60000 - 180000
    extra = ["--cairn.snapshot.every-events=5000", "--cairn.snapshot.interval=1s",
             "--cairn.storage.sync=interval"]
    node = H.Node(args.bin_dir, args.source_dir, name="crash", extra_args=extra,
                  partitions=4, keep=args.keep)
    sh = Shared()
    ok = False
    try:
        P.start(node)
        node.wait_ready()
        threads = [threading.Thread(target=client, args=(i, node, sh, base, deadline),
                                    daemon=True) for i in range(CLIENTS)]
        for t in threads:
            t.start()
        for i in range(CYCLES):
            time.sleep(rng.uniform(0.2, 0.9))
            code = P.sigkill(node)
            chk.check(code == -9, f"cycle {i + 1}: exit code {code}, expected -9")
            P.start(node)
        time.sleep(1.0)
        node.wait_ready(60)
        time.sleep(0.5)
        sh.stop.set()
        for t in threads:
            t.join(timeout=max(1.0, deadline - time.time()))
        chk.check(not any(t.is_alive() for t in threads), "client threads did not finish")
        for e in sh.errors:
            chk.check(False, e)
        H.log(f"{CYCLES} kill/restart cycles: {sh.requests} replies {sh.replies}, "
              f"{sh.failures} connection failures, {sh.acked}/{sh.sent} batches acknowledged")
        chk.check(not sh.bad, f"{len(sh.bad)} replies neither ok nor unavailable, first: "
                              f"{sh.bad[:3]}")
        chk.check(sh.replies.get("unavailable", 0) + sh.failures > 0,
                  "no request hit a restarting node: the loop tested nothing")
        chk.require(sh.acked == sh.sent, f"only {sh.acked} of {sh.sent} batches acknowledged")
        got, r = P.total_count(node, METRIC, base, base + 60000)
        chk.count()
        chk.check(got == sh.acked * BATCH,
                  f"node holds {got} events, acknowledged {sh.acked * BATCH} (each once)")
        ok = True
    except H.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if not ok or chk.failures:
            node.dump_log(80)
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    H.main_wrapper(main)
