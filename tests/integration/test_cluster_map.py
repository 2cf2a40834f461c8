"""The partition map changes at runtime and every node routes by its current
map (docs/cluster.md, "Partition map").

Three cairn-node processes. Before any write, c2 is stopped and a map of
version 2 that moves the empty partition 0 from c1 to c3 is adopted at c1
through the console (`map adopt`, the node actor's map.adopt). c3 pulls it
at its next ping; keyed events are ingested through c1 and c3 (c2's
partitions are hinted meanwhile); c2 restarts with version 1 on disk and
takes writes at once, converging by itself. Then: every node has version 2,
partition 0's events are at c3 and nowhere else, every node answers
complete and exact, c1 keeps version 2 across a restart (cluster-map.json),
an older or incompatible map changes nothing. Finally a map of version 3
where c2 owns nothing and left: c2 refuses client writes with
`decommissioned`, and with c2 stopped a restarted c1 (which never heard
from c2) still answers complete. A persisted map of another cluster
refuses the start."""

import json
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster, make_events, compare_everything  # noqa: E402

SEED = 1313
PARTITIONS = 8


def console(args, node, command):
    """Runs one console command with --json; returns (rc, last JSON line)."""
    p = h.subprocess.run(
        [os.path.join(args.bin_dir, "cairn-console"),
         f"--connect=127.0.0.1:{node.cluster_port}", f"--exec={command}",
         "--json", "--timeout=10"],
        capture_output=True, text=True, timeout=60)
    lines = [line for line in p.stdout.splitlines() if line.strip()]
    try:
        return p.returncode, json.loads(lines[-1]) if lines else {}
    except ValueError:
        return p.returncode, {"unparsed": p.stdout + p.stderr}


def map_of(cluster, node):
    return cluster.cluster_view(node)["partition_map"]


def wire_map(m):
    """The map.adopt form of a `cluster` op's partition_map."""
    return {k: m[k] for k in ("version", "partitions", "nodes", "owners", "left")}


def stats_events(node):
    """Events per partition id in the node's stats (its owned partitions)."""
    with node.client(30) as c:
        r = c.request({"op": "stats"}, 30)
    return {p["id"]: p["events"] for p in r.get("partitions", [])}


def ingest(chk, node, events, key_prefix):
    with node.client(60) as c:
        for i in range(0, len(events), 300):
            batch = events[i:i + 300]
            r = c.request({"op": "ingest", "events": batch,
                           "idempotency_key": f"{key_prefix}-{i}"}, 60)
            chk.check(r.get("ok") is True and r.get("accepted") == len(batch),
                      f"ingest via {node.name}: {str(r)[:300]}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_cluster_map")
    rng = random.Random(SEED)
    cluster = Cluster(args, n=3, partitions=PARTITIONS, prefix="c")
    c1, c2, c3 = cluster.nodes
    try:
        cluster.start()
        v1 = map_of(cluster, c1)
        chk.check(v1["version"] == 1 and v1["owners"][0] == "c1"
                  and v1["left"] == [], f"initial map: {v1}")

        # -- map.get through the console -------------------------------------
        rc, r = console(args, c3, "map")
        chk.check(rc == 0 and r.get("ok") is True
                  and r.get("map", {}).get("version") == 1,
                  f"console map: {rc} {r}")

        # -- c2 down, partition 0 (empty) moves from c1 to c3 -----------------
        c2.stop()
        v2 = wire_map(v1)
        v2["version"] = 2
        v2["owners"][0] = "c3"
        rc, r = console(args, c1, "map adopt " + json.dumps(v2))
        chk.check(rc == 0 and r.get("ok") is True and r.get("version") == 2
                  and r.get("changed") is True, f"map adopt v2 at c1: {rc} {r}")
        chk.check(os.path.exists(os.path.join(c1.storage, "cluster-map.json")),
                  "c1 persisted the map")
        # c3 learns it from c1's ping reply (pull), without being told.
        cluster.wait_until(lambda: map_of(cluster, c3)["version"] == 2, 20,
                           "c3 adopts map v2")
        chk.check(map_of(cluster, c3)["owners"][0] == "c3",
                  f"c3's map: {map_of(cluster, c3)}")

        # An older map, and one of another cluster, change nothing.
        rc, r = console(args, c1, "map adopt " + json.dumps(wire_map(v1)))
        chk.check(rc == 0 and r.get("ok") is True and r.get("version") == 2
                  and r.get("changed") is False, f"adopt v1 again: {r}")
        other = dict(v2, version=9, nodes=["c1", "c2", "x9"],
                     owners=["c1"] * PARTITIONS)
        rc, r = console(args, c1, "map adopt " + json.dumps(other))
        chk.check(r.get("ok") is False and r.get("code") == "incompatible",
                  f"adopt another cluster's map: {rc} {r}")
        chk.check(map_of(cluster, c1)["version"] == 2, "c1 still at v2")

        # -- keyed writes through c1 and c3 while c2 is down ------------------
        t0 = h.now_ms()
        events = make_events(rng, t0, 3000)
        ref = h.Reference(events)
        ingest(chk, c1, events[:1500], "a")
        ingest(chk, c3, events[1500:], "b")
        h.log(f"ingested {len(events)} events via c1 and c3 with c2 down")

        # -- c2 restarts with v1 on disk and takes writes at once -------------
        c2.start()
        c2.wait_ready(60)
        more = make_events(rng, t0, 900)
        for e in more:
            ref.add(e)
        ingest(chk, c2, more, "c")
        cluster.wait_until(lambda: map_of(cluster, c2)["version"] == 2, 30,
                           "c2 converges on map v2")
        cluster.wait_members_up(60, hints_drained=True)
        views = [map_of(cluster, n) for n in cluster.nodes]
        chk.check(all(wire_map(v) == wire_map(views[0]) for v in views),
                  f"maps differ: {views}")
        chk.check(os.path.exists(os.path.join(c2.storage, "cluster-map.json")),
                  "c2 persisted the map it pulled")

        # -- partition 0's events are at c3, nowhere else ---------------------
        # Settle: forwarded/hinted writes are acknowledged by their owner.
        cluster.wait_until(
            lambda: sum(sum(stats_events(n).values()) for n in cluster.nodes)
            == len(events) + len(more), 30, "every event applied once")
        at = {n.name: stats_events(n) for n in cluster.nodes}
        chk.check(at["c3"].get(0, 0) > 0,
                  f"partition 0 has no events at its new owner c3: {at}")
        chk.check(0 not in at["c1"], f"c1 still reports partition 0: {at}")
        total = sum(sum(v.values()) for v in at.values())
        chk.check(total == len(events) + len(more),
                  f"events over all owners {total} != {len(events) + len(more)}")

        # -- every node answers complete and exact ----------------------------
        for node in cluster.nodes:
            compare_everything(chk, node, ref, t0, "after the move")

        # -- the map survives a restart ---------------------------------------
        c1.stop()
        c1.start()
        c1.wait_ready(60)
        chk.check(map_of(cluster, c1)["version"] == 2,
                  f"c1 after restart: {map_of(cluster, c1)}")
        cluster.wait_members_up(60, hints_drained=True)
        compare_everything(chk, c1, ref, t0, "c1 restarted")

        # -- c2 leaves: it owns nothing and refuses client writes ------------
        v3 = wire_map(map_of(cluster, c1))
        v3["version"] = 3
        v3["owners"] = ["c1" if o == "c2" else o for o in v3["owners"]]
        v3["left"] = ["c2"]
        rc, r = console(args, c3, "map adopt " + json.dumps(v3))
        chk.check(rc == 0 and r.get("version") == 3, f"adopt v3 at c3: {r}")
        cluster.wait_until(
            lambda: all(map_of(cluster, n)["version"] == 3 for n in cluster.nodes),
            30, "every node at v3")
        view = cluster.cluster_view(c2)
        chk.check(view.get("left") == ["c2"] and view["partition_map"]["owned"]["c2"] == [],
                  f"c2's cluster view: left={view.get('left')} "
                  f"owned={view['partition_map'].get('owned')}")
        with c2.client(30) as c:
            r = c.request({"op": "ingest", "events": make_events(rng, t0, 5)}, 30)
        chk.check(r.get("ok") is False
                  and r.get("error", {}).get("code") == "decommissioned",
                  f"write to a member that left: {r}")
        # c2 stopped, c1 restarted: c1 never hears from c2, yet its answers
        # are not partial for that (c2 left).
        c2.stop()
        c1.stop()
        c1.start()
        c1.wait_ready(60)
        cluster.wait_until(lambda: cluster.member(cluster.cluster_view(c1), "c3")
                           .get("announced", {}).get("known"), 30,
                           "c1 heard from c3")
        with c1.client(30) as c:
            r = c.request({"op": "query", "metric": "cpu", "from": t0 - 600_000,
                           "to": t0 + 60_000, "step": "60s", "aggs": ["count"]}, 30)
        chk.check(r.get("ok") is True and r.get("partial") is False,
                  f"query at c1 with c2 left and stopped: {str(r)[:300]}")
        # -- a persisted map of another cluster refuses the start ------------
        path = os.path.join(c2.storage, "cluster-map.json")
        with open(path, "w") as f:
            json.dump({"version": 7, "partitions": PARTITIONS,
                       "nodes": ["c1", "c2", "x9"],
                       "owners": ["c1"] * PARTITIONS, "left": []}, f)
        c2.start()
        try:
            code = c2.proc.wait(timeout=30)
        except h.subprocess.TimeoutExpired:
            code = None
        chk.check(code not in (None, 0),
                  f"c2 started with another cluster's map (exit {code})")
        chk.check("cluster-map.json" in c2.log_text(),
                  "the refusal names the file")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
