"""Three cairn-node processes form a cluster (static membership): events are
sent through every node (request/ack ingest and fire-and-forget + flush),
and queries, topk, series and metrics from every node must equal an
independent reference over all events. Also checks the `cluster` op: the
same versioned partition map on every node, every member up."""

import random
import sys
import os

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster, make_events, compare_everything  # noqa: E402

SEED = 4242


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_cluster")
    rng = random.Random(SEED)
    cluster = Cluster(args, n=3, partitions=8)
    try:
        cluster.start()
        h.log("3 nodes up")
        # -- the partition map is the same everywhere --------------------------
        views = [cluster.cluster_view(n) for n in cluster.nodes]
        maps = [v.get("partition_map") for v in views]
        chk.check(all(m == maps[0] for m in maps), f"partition maps differ: {maps}")
        chk.check(maps[0].get("version") == 1, f"map version: {maps[0]}")
        owned = maps[0].get("owned", {})
        chk.check(sorted(p for ps in owned.values() for p in ps) == list(range(8)),
                  f"map does not cover 8 partitions: {owned}")
        for v in views:
            chk.check(v.get("up") == 3, f"{v.get('self')}: up = {v.get('up')}")

        # -- ingest through every node ----------------------------------------
        t0 = h.now_ms()
        events = make_events(rng, t0, 9000)
        ref = h.Reference(events)
        thirds = [events[i::3] for i in range(3)]
        for node, part in zip(cluster.nodes, thirds):
            half = len(part) // 2
            with node.client(60) as c:
                # request/ack ingest in batches
                for i in range(0, half, 500):
                    batch = part[i:min(i + 500, half)]
                    r = c.request({"op": "ingest", "events": batch}, 60)
                    chk.check(r.get("ok") is True and r.get("accepted") == len(batch),
                              f"ingest via {node.name}: {str(r)[:300]}")
                # fire-and-forget lines, then flush
                c.send_lines(part[half:])
                r = c.request({"op": "flush"}, 60)
                chk.check(r.get("accepted") == len(part) - half and r.get("rejected") == 0,
                          f"flush via {node.name}: {r}")
        h.log(f"ingested {len(events)} events through 3 nodes")

        # -- idempotency across nodes: the same key via two nodes applies once -
        extra = make_events(rng, t0, 50, metrics=("idem",))
        for node in cluster.nodes[:2]:
            with node.client(30) as c:
                r = c.request({"op": "ingest", "events": extra,
                               "idempotency_key": "cluster-k1"}, 30)
                chk.check(r.get("ok") is True, f"idempotent ingest via {node.name}: {r}")
        for e in extra:
            ref.add(e)

        # -- queries from every node ------------------------------------------
        for node in cluster.nodes:
            compare_everything(chk, node, ref, t0, "complete",
                               metrics=("cpu", "lat", "req", "idem"))

        # -- the console reaches another member's actors through its link -----
        first, second = cluster.nodes[0], cluster.nodes[1]
        con = h.subprocess.run(
            [f"{args.bin_dir}/cairn-console",
             f"--connect=127.0.0.1:{first.cluster_port}",
             "--exec", f"actors {second.name}"],
            capture_output=True, text=True, timeout=30)
        chk.check(con.returncode == 0, f"console actors {second.name}: {con.stderr}")
        chk.check(f"link-{first.name}" in con.stdout
                  and f"link-{second.name}" not in con.stdout,
                  f"console listed the wrong node's actors: {con.stdout[:400]}")

        # -- stats carries the membership view --------------------------------
        with cluster.nodes[0].client(10) as c:
            st = c.request({"op": "stats"}, 10)
        chk.check(st.get("cluster", {}).get("up") == 3, f"stats cluster: {str(st)[:300]}")
        # every forwarded batch was acknowledged by its owner, none hinted
        for v in (cluster.cluster_view(n) for n in cluster.nodes):
            for m in v["members"]:
                if not m.get("self"):
                    chk.check(m["hints"]["stored"] == 0, f"unexpected hints: {m}")
    except h.TestFailure as e:
        chk.check(False, str(e))
        cluster.dump_logs()
    finally:
        cluster.finish(chk)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
