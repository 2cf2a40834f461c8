#!/usr/bin/env python3
"""A node admitted through seeds that never starts does not keep every
answer partial (docs/sagas.md, "join").

2 members (g1, g2), 4 partitions, 200 events of metric x:

A. `saga.join` for g3 with its address, as a node started with seeds sends
   it, but g3 is not started: g3 is admitted (a member that owns nothing and
   was never heard from), and answers are partial, as the completeness
   invariant says they must be;
B. the join saga's `join` step cannot give g3 the map (20 attempts 3 s
   apart, about a minute) and the saga compensates: g3 is marked left, every node holds
   that map, and answers are complete and exact again;
C. g3 is then started with seeds = [g1]: it joins after all (a new join
   saga, which succeeds), gets its share of the partitions, and every node
   answers complete and exact, the events written since included.
"""

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from ack_ledger import QUERY  # noqa: E402
from test_sagas import (agreed_map, any_node, check_exact, request, saga,  # noqa: E402
                        wait_finished)


def ingest(chk, node, first, n):
    evs = [{"metric": "x", "ts": h.now_ms() - 2000, "value": 1,
            "tags": {"k": str(first + i)}} for i in range(n)]
    r = request(node, {"op": "ingest", "events": evs})
    chk.check(r.get("ok") is True and r.get("accepted") == n, f"ingest via {node.name}: {r}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_join_never_started")
    cluster = Cluster(args, n=2, partitions=4, prefix="g")
    g3 = None
    try:
        cluster.start()
        g1, g2 = cluster.nodes
        ingest(chk, g1, 0, 200)
        check_exact(cluster, chk, 200, 30, " before")

        # -- A: admitted, not started ------------------------------------------
        g3 = cluster.joiner("g3", [f"127.0.0.1:{g1.cluster_port}"])
        address = f"127.0.0.1:{g3.cluster_port}"
        deadline = time.time() + 30
        while True:
            r = any_node(cluster, {"op": "saga.join", "node": "g3", "address": address,
                                   "partitions": 4})
            if r.get("ok") or time.time() > deadline:
                break
            time.sleep(0.5)
        chk.require(r.get("ok") is True and r.get("id"), f"saga.join for g3: {r}")
        sid = r["id"]
        chk.check("g3" in r.get("map", {}).get("nodes", []), f"g3 not admitted: {r.get('map')}")
        # g2 takes the admission's map from the leader (at once, or at its
        # next ping); from then on its answers wait for g3.
        for node in cluster.nodes:
            try:
                cluster.wait_until(lambda: request(node, QUERY).get("partial") is True, 10,
                                   f"{node.name} partial while g3 is admitted, never heard")
            except h.TestFailure as e:
                chk.check(False, str(e))
        h.log(f"g3 admitted ({sid}), not started: answers partial")

        # -- B: the saga compensates, g3 is marked left ------------------------
        try:
            s = wait_finished(cluster, sid, timeout=150)
        except h.TestFailure:
            raise h.TestFailure(f"join saga of g3 still running: {saga(cluster, sid)}")
        chk.check(s.get("phase") == "compensated", f"join saga of a node never started: {s}")
        m = cluster.wait_until(
            lambda: (lambda x: x if "g3" in x.get("left", []) else None)(agreed_map(cluster)),
            30, "every node on a map with g3 left")
        chk.check("g3" not in m["owners"], f"g3 owns partitions: {m['owners']}")
        check_exact(cluster, chk, 200, 30, " after g3 was marked left")
        h.log(f"join saga compensated; map v{m['version']} has g3 left; answers complete")

        # -- C: g3 starts after all and joins ----------------------------------
        g3.start()
        g3.wait_ready(90)
        cluster.nodes.append(g3)

        def owns():
            x = agreed_map(cluster)
            return x if (x["owners"].count("g3") == 1 and "g3" not in x.get("left", [])) else None
        m = cluster.wait_until(owns, 120, "g3 owning its share of 4 partitions")
        ingest(chk, g3, 200, 100)
        cluster.wait_members_up(60, hints_drained=True)
        check_exact(cluster, chk, 300, 30, " after g3 joined")
        h.log(f"g3 started later and joined: map v{m['version']} {m['owners']}")
    except h.TestFailure as e:
        chk.check(False, str(e))
        cluster.dump_logs(60)
    finally:
        if g3 is not None and g3 not in cluster.nodes:
            g3.cleanup()
        cluster.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
