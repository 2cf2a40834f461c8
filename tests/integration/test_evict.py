#!/usr/bin/env python3
"""A member that is gone for good is evicted (docs/sagas.md, "evict").

3 members (e1, e2, e3), 6 partitions, max-future 1 s (so the lost marks'
reach ends 1 s after the eviction):

A. 600 events of metric a through e1, acknowledged; e3's share of them is
   read from its stats; then e3 is killed (-9): its disk counts as lost.
B. 300 events of metric b through e1, acknowledged: those of e3's
   partitions are hinted at e1 (e3 is down).
C. Refused before anything changes: evicting a member that is up, the
   asking node itself, an unknown node, no node.
D. `saga.evict e3`: the saga succeeds; e1 and e2 hold one map in which e3
   has left and is evicted, owns nothing, and exactly its partitions are
   marked lost; the partitions went to e1 and e2.
E. Answers say what went with it: a is partial with `lost_partitions`
   naming e3's partitions and counts exactly the events of the other
   partitions; b counts all 300 (the hints e1 held for e3 went to the new
   owners) and is partial too (its range starts before the eviction).
F. 200 events of metric c after the eviction, through e2: a query from
   after the lost marks' reach is complete and exact; writes to e3's old
   partitions work.
G. e3 restarts on its old data: it takes the new map, refuses client
   writes (`decommissioned`), and its stale copies are not counted; joined
   again (`saga.join e3`) it gets partitions by handoff and still nothing
   stale comes back: every answer is the same.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from ack_ledger import count_of  # noqa: E402
from test_sagas import agreed_map, any_node, error_code, request, start, wait_finished  # noqa: E402


def query(metric, frm="-15m"):
    return {"op": "query", "metric": metric, "from": frm, "step": "60s",
            "aggs": ["count"]}


def ingest(chk, node, metric, n, ts=None):
    t = ts if ts is not None else h.now_ms() - 2000
    evs = [{"metric": metric, "ts": t, "value": 1, "tags": {"k": str(i)}}
           for i in range(n)]
    r = request(node, {"op": "ingest", "events": evs}, timeout=30)
    chk.check(r.get("ok") is True and r.get("accepted") == n,
              f"{metric} through {node.name}: {r}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_evict")
    cluster = Cluster(args, n=3, partitions=6, prefix="e",
                      extra_args=["--cairn.ingest.max-future=1s"])
    everyone = list(cluster.nodes)
    try:
        cluster.start()
        e1, e2, e3 = cluster.nodes
        cluster.wait_members_up(60)

        # -- A ---------------------------------------------------------------
        ingest(chk, e1, "a", 600)
        cluster.wait_until(lambda: count_of(request(e1, query("a"))) == 600, 20,
                           "600 events of a counted")
        owned = sorted(agreed_map(cluster)["owned"]["e3"])
        chk.require(len(owned) == 2, f"e3 owns {owned}")
        share = request(e3, {"op": "stats"}).get("events_applied")
        chk.require(isinstance(share, int) and 0 < share < 600,
                    f"e3's share of a: {share}")
        e3.kill()
        h.log(f"e3 (partitions {owned}, {share} of 600 events) killed")

        # -- B ---------------------------------------------------------------
        cluster.wait_until(
            lambda: cluster.member(cluster.cluster_view(e1), "e3")["status"] != "up",
            20, "e1 sees e3 down")
        ingest(chk, e1, "b", 300)
        hinted = cluster.member(cluster.cluster_view(e1), "e3")["hints"]["pending"]
        chk.check(hinted > 0, f"e1 holds no hints for e3: {hinted}")
        r = request(e2, query("b"))
        chk.check(r.get("partial") is True, f"b while e3 is down: {r}")

        # -- C ---------------------------------------------------------------
        cases = [({"op": "saga.evict", "node": "e1"}, ("is up", "itself")),
                 ({"op": "saga.evict", "node": "e9"}, ("unknown node",)),
                 ({"op": "saga.evict"}, ("needs",))]
        for req, text in cases:
            r = cluster.wait_until(
                lambda: (lambda x: x if error_code(x) != "unavailable" else None)(
                    any_node(cluster, req)), 20, f"an answer to {req}")
            chk.check(error_code(r) == "bad_request" and any(t in str(r) for t in text),
                      f"{req}: {r}")
        r = request(e2, {"op": "saga.list"})
        leader = r.get("leader")
        if leader in ("e1", "e2"):
            r = request(cluster.by_name(leader), {"op": "saga.evict", "node": leader})
            chk.check(error_code(r) == "bad_request" and "itself" in str(r),
                      f"evict the leader itself: {r}")
        before = agreed_map(cluster)
        chk.check(before["version"] == 1 and not before.get("left"),
                  f"the map changed on refusals: {before}")

        # -- D ---------------------------------------------------------------
        cluster.nodes = [e1, e2]
        t_evict = h.now_ms()
        sid = start(cluster, {"op": "saga.evict", "node": "e3"})
        s = wait_finished(cluster, sid, timeout=60)
        chk.check(s.get("phase") == "succeeded", f"evict saga: {s}")
        steps = [r.get("step") for r in s.get("records", []) if r.get("kind") == "step_done"]
        chk.check(steps == [0, 1], f"evict steps done: {steps}")
        m = agreed_map(cluster)
        chk.check(m["version"] == 2, f"one map change: {m}")
        chk.check(m.get("left") == ["e3"] and m.get("evicted") == ["e3"],
                  f"e3 left and evicted: {m}")
        chk.check("e3" not in m["owners"], f"e3 still owns: {m['owners']}")
        lost = m.get("lost", {})
        chk.check(sorted(int(p) for p in lost) == owned,
                  f"lost marks {lost}, e3 owned {owned}")
        at = min(lost.values()) if lost else 0
        chk.check(t_evict - 1000 <= at <= h.now_ms(), f"lost at {at}, evicted at {t_evict}")
        chk.check(sorted(m["owners"].count(n) for n in ("e1", "e2")) == [3, 3],
                  f"e3's partitions spread over e1 and e2: {m['owners']}")
        h.log(f"evicted: map v{m['version']} owners {m['owners']} lost {lost}")

        # -- E ---------------------------------------------------------------
        for node in cluster.nodes:
            def settled():
                r = request(node, query("b"))
                return r if count_of(r) == 300 else None
            try:
                r = cluster.wait_until(settled, 30, f"{node.name}: every hinted b delivered")
            except h.TestFailure as e:
                chk.check(False, f"{e}: {request(node, query('b'))}")
                continue
            chk.check(r.get("partial") is True
                      and sorted(int(p) for p in r.get("lost_partitions", {})) == owned,
                      f"{node.name}: b names the lost partitions: {r}")
            r = request(node, query("a"))
            chk.check(count_of(r) == 600 - share,
                      f"{node.name}: a counts {count_of(r)}, want {600 - share}")
            chk.check(r.get("partial") is True
                      and sorted(int(p) for p in r.get("lost_partitions", {})) == owned
                      and set(owned) <= set(r.get("missing_partitions", [])),
                      f"{node.name}: a partial with the lost partitions: {r}")
            series = request(node, {"op": "series", "metric": "a"})
            chk.check(series.get("partial") is True and "lost_partitions" in series,
                      f"{node.name}: series of a partial: {str(series)[:300]}")
        hints = cluster.member(cluster.cluster_view(e1), "e3")["hints"]
        chk.check(hints["pending"] == 0, f"e1 still holds hints for e3: {hints}")

        # -- F ---------------------------------------------------------------
        # c's 1 s buckets start at or after `from` (a bucket that starts
        # before it is not read): ts >= at + 3000, so its start >= at + 2000.
        time.sleep(max(0.0, (at + 3000 - h.now_ms()) / 1000))
        t_c = h.now_ms()
        ingest(chk, e2, "c", 200, ts=t_c)
        after = query("c", frm=at + 1500)
        after["step"] = "1s"
        for node in cluster.nodes:
            def exact():
                r = request(node, after)
                return r if r.get("partial") is False and count_of(r) == 200 else None
            try:
                cluster.wait_until(exact, 20, f"{node.name}: c complete after the lost marks' reach")
            except h.TestFailure as e:
                chk.check(False, f"{e}: {after} -> {request(node, after)}; "
                                 f"c from -15m: {request(node, query('c'))}")

        # -- G ---------------------------------------------------------------
        e3.start()
        e3.wait_ready(60)
        cluster.wait_until(
            lambda: cluster.cluster_view(e3)["partition_map"]["version"] >= 2, 30,
            "e3 takes the new map")
        r = request(e3, {"op": "ingest", "events": [
            {"metric": "a", "ts": h.now_ms(), "value": 1, "tags": {"k": "late"}}]})
        chk.check(error_code(r) == "decommissioned", f"a write to evicted e3: {r}")
        chk.check(count_of(request(e1, query("a"))) == 600 - share,
                  "e3's stale copies counted after its restart")
        cluster.nodes = [e1, e2, e3]
        sid = start(cluster, {"op": "saga.join", "node": "e3"})
        s = wait_finished(cluster, sid, timeout=120)
        chk.check(s.get("phase") == "succeeded", f"join of e3: {s}")
        m = agreed_map(cluster)
        chk.check("e3" in m["owners"] and not m.get("left") and not m.get("evicted"),
                  f"e3 back and owning: {m}")
        chk.check(sorted(int(p) for p in m.get("lost", {})) == owned,
                  f"lost marks kept across the join: {m.get('lost')}")
        cluster.wait_members_up(60, hints_drained=True)
        for node in cluster.nodes:
            for metric, want in (("a", 600 - share), ("b", 300), ("c", 200)):
                got = count_of(request(node, query(metric)))
                chk.check(got == want, f"{node.name}: {metric} counts {got} after the "
                                       f"join, want {want}")
        h.log(f"e3 joined again: map v{m['version']} {m['owners']}; nothing stale back")
    except h.TestFailure as e:
        chk.check(False, str(e))
        cluster.dump_logs(60)
    finally:
        cluster.cleanup()
        for n in everyone:
            if n not in cluster.nodes:
                n.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
