"""A node that is in nobody's config joins a running cluster through
cairn.cluster.seeds (docs/cluster.md, "Joining through seeds").

3 members (j1..j3), 8 partitions, keyed ingest through j1 and j3 the whole
time and a query loop on every node that checks the completeness invariant
at every answer (tests/integration/ack_ledger.py):

A. bad input: a seed that is not host:port stops the node at start (exit 2,
   the option named); a node that asks to join under a member's name at
   another address, or with another partition count, is refused by the
   leader (exit 1, "refused the join"), and the cluster's map is unchanged;
B. j4 starts with seeds = [j2] only (j2 does not lead: it passes the join to
   the leader). It is admitted (map + 1 member with every address), the join
   saga gives it its share (8 / 4 = 2 partitions), every node agrees on the
   map; j4 takes ingest and queries like any member;
C. j4 is killed (-9) under ingest and restarted with the same config: it
   starts from its persisted map (no second join) and catches up;
D. j4 is decommissioned again (a seed-joined node leaves like any other);
E. the end state: every node on one map, answers complete and exactly the
   acknowledged count.
"""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from ack_ledger import Ingest, Queries, start_load  # noqa: E402
from test_sagas import (agreed_map, any_node, check_end_state,  # noqa: E402
                        start, wait_finished)

PARTITIONS = 8


def run_to_exit(node, timeout=90):
    """Starts `node`, which must exit on its own: (exit code, its log)."""
    node.start()
    try:
        code = node.proc.wait(timeout)
    except subprocess.TimeoutExpired:
        node.kill()
        raise h.TestFailure(f"{node.name} did not exit")
    with open(node.log_path, errors="replace") as f:
        return code, f.read()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_join")
    cluster = Cluster(args, n=3, partitions=PARTITIONS, prefix="j")
    threads = []
    try:
        cluster.start()
        j1, j2, j3 = cluster.nodes
        seed = f"127.0.0.1:{j2.cluster_port}"
        ledger, t0, ingest, queries = start_load(cluster, chk, [j1, j3], "join")
        threads = ingest + queries
        m0 = agreed_map(cluster)
        h.log(f"map v{m0['version']}: {m0['nodes']} {m0['owners']}")

        # -- A. bad input -----------------------------------------------------
        bad = cluster.joiner("jx", ["not-an-address"])
        code, log = run_to_exit(bad)
        chk.check(code == 2 and "cairn.cluster.seeds" in log
                  and "not-an-address" in log,
                  f"a malformed seed: exit {code}, {log[-300:]}")
        impostor = cluster.joiner("jy", [seed],
                                  extra_args=["--cairn.cluster.node-name=j3"])
        code, log = run_to_exit(impostor)
        chk.check(code == 1 and "refused the join" in log
                  and "member j3 is at" in log,
                  f"a member's name at another address: exit {code}, "
                  f"{log[-400:]}")
        other = cluster.joiner("jz", [seed], extra_args=["--cairn.partitions=4"])
        code, log = run_to_exit(other)
        chk.check(code == 1 and "refused the join" in log
                  and f"the cluster has {PARTITIONS} partitions" in log,
                  f"another partition count: exit {code}, {log[-400:]}")
        m = agreed_map(cluster)
        chk.check(m["version"] == m0["version"] and m["nodes"] == m0["nodes"],
                  f"a refused join changes no map: {m}")

        # -- B. j4 joins through j2 ------------------------------------------
        j4 = cluster.joiner("j4", [seed])
        cluster.nodes.append(j4)
        started = time.time()
        j4.start()
        j4.wait_ready(90)
        joins = []

        def join_saga():
            r = any_node(cluster, {"op": "saga.list", "limit": 50})
            found = [x for x in r.get("sagas", []) if x.get("type") == "join"
                     and x.get("params", {}).get("node") == "j4"]
            joins[:] = found
            return found[0] if found and found[0].get("phase") in (
                "succeeded", "compensated", "stuck") else None
        s = cluster.wait_until(join_saga, 120, "the join saga of j4 to finish")
        took = time.time() - started
        chk.check(s["phase"] == "succeeded", f"join of j4: {s}")
        chk.check(len(joins) == 1, f"one join saga for j4: {joins}")
        m = agreed_map(cluster)
        chk.check(m["nodes"] == ["j1", "j2", "j3", "j4"],
                  f"j4 appended to the members: {m['nodes']}")
        chk.check(m["owners"].count("j4") == PARTITIONS // 4
                  and all(m["owners"].count(n) == PARTITIONS // 4
                          for n in ("j1", "j2", "j3")),
                  f"every member owns {PARTITIONS // 4} after the join: "
                  f"{m['owners']}")
        chk.check(m.get("addresses", {}).get("j4")
                  == f"127.0.0.1:{j4.cluster_port}"
                  and len(m.get("addresses", {})) == 4,
                  f"the map carries every member's address: "
                  f"{m.get('addresses')}")
        h.log(f"j4 joined in {took:.1f} s: map v{m['version']} {m['owners']}, "
              f"{ledger.acked_total()} acknowledged")
        cluster.wait_members_up(60)
        for node in cluster.nodes:
            view = cluster.cluster_view(node)
            names = sorted(x["name"] for x in view["members"])
            chk.check(names == ["j1", "j2", "j3", "j4"],
                      f"{node.name} lists every member: {names}")
        # j4 serves like any member: ingest through it, queries at it.
        more = Ingest(j4, ledger, chk, "c", t0, "join")
        q4 = Queries(j4, ledger, chk)
        for t in (more, q4):
            t.start()
        ingest.append(more)
        queries.append(q4)
        threads += [more, q4]
        time.sleep(3)

        # -- C. kill -9 j4 and restart it ------------------------------------
        j4.kill()
        time.sleep(1)
        j4.start()
        j4.wait_ready(90)
        with open(j4.log_path, errors="replace") as f:
            log = f.read()
        chk.check(log.count("admitted by seed") == 1,
                  "a restarted j4 starts from its persisted map, no second "
                  "join")
        cluster.wait_members_up(60)
        m = agreed_map(cluster)
        chk.check(m["owners"].count("j4") == PARTITIONS // 4,
                  f"j4 keeps its partitions across the restart: {m}")

        # -- D. j4 leaves again ----------------------------------------------
        # A member that left refuses client writes: its client stops first.
        more.stop_flag.set()
        more.join(60)
        sid = start(cluster, {"op": "saga.decommission", "node": "j4"})
        s = wait_finished(cluster, sid, 120)
        chk.check(s["phase"] == "succeeded", f"decommission of j4: {s}")
        m = agreed_map(cluster)
        chk.check("j4" not in m["owners"] and "j4" in m.get("left", []),
                  f"j4 owns nothing and has left: {m}")

        # -- E. the end state ------------------------------------------------
        check_end_state(cluster, chk, ingest, queries, ledger)
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        for t in threads:
            t.stop_flag.set()
        cluster.finish(chk, 80)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
