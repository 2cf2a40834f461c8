#!/usr/bin/env python3
"""Restarts of a persistent node (issue #3).

1. Graceful restart replays nothing: keyed ingests + fire-and-forget events
   ended by a flush, SIGTERM (exit 0), restart: ping goes to "ready", stats
   recovery.replayed_events == 0 (final snapshots cover everything), every
   partition's snapshot_seq == journal_seq, queries equal the reference.
2. Idempotent retry across restarts: a batch acknowledged before a graceful
   restart and one acknowledged just before a SIGKILL are re-sent with their
   keys after the restart: both are answered as duplicates and nothing is
   counted twice; a new key is applied normally.
3. Graceful restart under load: a client keeps ingesting (keyed, pipelined)
   while SIGTERM arrives; every acknowledged batch survives, and the restart
   replays nothing.
"""

import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402
import persistence_helpers as P  # noqa: E402

METRIC = "rs.m"


class Gen:
    def __init__(self, base):
        self.base, self.n = base, 0

    def events(self, n, metric=METRIC):
        out = []
        for _ in range(n):
            self.n += 1
            out.append({"metric": metric, "ts": self.base + (self.n * 13) % 200000,
                        "value": float(self.n % 997), "tags": {"s": f"s{self.n % 10}",
                                                               "z": f"z{self.n % 3}"}})
        return out


def verify(chk, node, ref, base, label, metric=METRIC):
    frm, to = base - 1000, base + 201000
    with node.client(60.0) as c:
        diffs = P.compare_queries(chk, c, ref, metric, frm, to,
                                  [("per-series 1s", None, ["s", "z"], 1000),
                                   ("by z 60s", None, ["z"], 60000)], label)
    H.log(f"  verify [{label}]: {sum(1 for e in ref.events if e[0] == metric)} events, "
          f"{diffs} differences")


def ingest(c, evs, key):
    req = {"op": "ingest", "events": evs}
    if key:
        req["idempotency_key"] = key
    return c.request(req, timeout=60)


def check_clean_restart(chk, node, label):
    took, seen = P.wait_ready_observing(node, timeout=60)
    s = P.stats(node)
    rec = s.get("recovery") or {}
    chk.check(rec.get("replayed_events") == 0,
              f"{label}: replayed_events {rec.get('replayed_events')}, expected 0 "
              f"(per partition: {[(p['id'], p['replayed_events'], p['snapshot_seq'], p['journal_seq']) for p in s.get('partitions', [])]})")
    for p in s.get("partitions", []):
        chk.check(p.get("snapshot_seq") == p.get("journal_seq"),
                  f"{label}: partition {p.get('id')} snapshot_seq {p.get('snapshot_seq')} != "
                  f"journal_seq {p.get('journal_seq')}")
    ping = P.request(node, {"op": "ping"})
    chk.check(ping.get("status") == "ready", f"{label}: ping {ping}")
    H.log(f"  {label}: ready in {took:.3f}s (pings {sorted(x for x in seen if x)}), recovery {rec}")
    return s


def main():
    args = H.parse_args(__doc__)
    chk = H.Checker("restart")
    base = (H.now_ms() // 1000) * 1000 - 240000
    gen, ref = Gen(base), P.ExactRef()
    node = H.Node(args.bin_dir, args.source_dir, name="restart", partitions=8, keep=args.keep)
    ok = False
    try:
        P.start(node)
        node.wait_ready()
        H.log("== 1. graceful restart replays nothing")
        first_batch = None
        with node.client() as c:
            for i in range(20):
                evs = gen.events(300)
                r = ingest(c, evs, f"k{i}")
                if chk.check(r.get("ok") is True and r.get("accepted") == 300, f"ingest: {r}"):
                    ref.extend(evs)
                if i == 0:
                    first_batch = evs
            ff = gen.events(2000)
            c.send_lines(ff + [{"op": "flush", "id": "f"}])
            r = c.read_json(timeout=60)
            if chk.check(r.get("accepted") == 2000 and r.get("rejected") == 0, f"flush: {r}"):
                ref.extend(ff)
        took = node.stop(timeout=30)
        H.log(f"  SIGTERM -> exit 0 in {took:.2f}s")
        P.start(node)
        check_clean_restart(chk, node, "graceful restart")
        verify(chk, node, ref, base, "after graceful restart")

        H.log("== 2. idempotent retry across restarts")
        with node.client() as c:
            r = ingest(c, first_batch, "k0")
            chk.check(r.get("ok") is True and r.get("duplicate") is True,
                      f"re-sent k0 after a graceful restart: expected duplicate, got {r}")
            evs = gen.events(300)
            r = ingest(c, evs, "late")
            chk.check(r.get("ok") is True and not r.get("duplicate"), f"new key: {r}")
            ref.extend(evs)
        P.sigkill(node)   # right after the ack: "late" lives in the journal only
        P.start(node)
        took, seen = P.wait_ready_observing(node)
        s = P.stats(node)
        chk.check(s["recovery"]["replayed_events"] == 300,
                  f"SIGKILL restart replayed {s['recovery']['replayed_events']}, expected 300")
        with node.client() as c:
            for key, b in (("late", evs), ("k0", first_batch)):
                r = ingest(c, b, key)
                chk.check(r.get("ok") is True and r.get("duplicate") is True,
                          f"re-sent {key} after SIGKILL: expected duplicate, got {r}")
            # the same events under a new key are new events
            more = gen.events(100)
            r = ingest(c, more, "fresh")
            chk.check(r.get("ok") is True and not r.get("duplicate"), f"fresh key: {r}")
            ref.extend(more)
        verify(chk, node, ref, base, "after retries across restarts")

        H.log("== 3. graceful restart under load")
        stop = threading.Event()
        acked, sent, errors = [], [], []

        def loader():
            i = 0
            try:
                with node.client(30.0) as c:
                    while not stop.is_set():
                        batch = [(f"L{i + j}", gen.events(200)) for j in range(4)]
                        i += 4
                        sent.extend(batch)
                        replies = c.pipeline([{"op": "ingest", "events": e, "idempotency_key": k}
                                              for k, e in batch], window=4, timeout=30)
                        for (k, e), r in zip(batch, replies):
                            if r.get("ok") is True:
                                acked.append(k)
            except (OSError, TimeoutError, ValueError) as e:
                errors.append(repr(e))  # the node went away: expected

        t = threading.Thread(target=loader, daemon=True)
        t.start()
        time.sleep(2.0)
        code, took = node.terminate(timeout=30)
        stop.set()
        t.join(timeout=30)
        chk.check(code == 0, f"SIGTERM under load: exit code {code}")
        H.log(f"  SIGTERM under load: exit {code} in {took:.2f}s, {len(acked)} batches acked")
        P.start(node)
        check_clean_restart(chk, node, "graceful restart under load")
        # Batches sent but not acknowledged are retried with their keys (the
        # exactly-once protocol): afterwards every sent batch counts once.
        acked_set = set(acked)
        unacked = [(k, e) for k, e in sent if k not in acked_set]
        dup = 0
        with node.client() as c:
            for k, e in unacked:
                r = ingest(c, e, k)
                chk.check(r.get("ok") is True, f"retry of {k}: {r}")
                dup += bool(r.get("duplicate"))
        H.log(f"  retried {len(unacked)} unacknowledged batches: {dup} were already applied")
        for k, e in sent:
            ref.extend(e)
        verify(chk, node, ref, base, "after graceful restart under load")
        node.stop(timeout=30)
        ok = not chk.failures
    finally:
        if not ok:
            node.dump_log(80)
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    H.main_wrapper(main)
