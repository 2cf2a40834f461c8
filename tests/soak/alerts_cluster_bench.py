#!/usr/bin/env python3
"""Alerting in a 3-node cluster: how long replication and failover take
(docs/alerting.md, "Cluster"; figures in docs/benchmarks.md).

  1. N rules created through one node (pipelined): time until every node
     lists all N.
  2. One node killed -9; M rules created and M/2 deleted meanwhile; the
     node restarted: time from its `ready` until it lists the same rules as
     the others (anti-entropy catch-up).
  3. The owner of a firing rule killed -9: time until the others name a new
     owner (liveness lease + takeover delay), and until the firing state is
     still firing there (no new notification is expected).

Usage: python3 tests/soak/alerts_cluster_bench.py --bin-dir build/apps
       --source-dir . [--rules 2000] [--catchup 1000] [--creates-only]

--creates-only times step 1's acknowledgements alone (so a build without
replication, e.g. /work/main/build/apps, can be compared side by side).
"""

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "integration"))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402


def rule(name, **kw):
    r = {"name": name, "metric": f"b.{name}", "agg": "max", "window": "2s",
         "op": ">", "threshold": 100, "receivers": []}
    r.update(kw)
    return r


def names(node):
    with node.client(60) as c:
        r = c.request({"op": "alert.list"}, 60)
    return {x["name"]: x["version"] for x in r.get("rules", [])}


def wait(pred, timeout, step=0.05):
    t0 = time.time()
    while time.time() - t0 < timeout:
        if pred():
            return time.time() - t0
        time.sleep(step)
    return None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bin-dir", required=True)
    p.add_argument("--source-dir", required=True)
    p.add_argument("--rules", type=int, default=2000)
    p.add_argument("--catchup", type=int, default=1000)
    p.add_argument("--keep", action="store_true")
    p.add_argument("--creates-only", action="store_true")
    args = p.parse_args()
    args.bin_dir = os.path.abspath(args.bin_dir)
    args.source_dir = os.path.abspath(args.source_dir)
    h.log(f"load average before: {os.getloadavg()}")
    cluster = Cluster(args, n=3, partitions=8, prefix="ab")
    out = {}
    try:
        cluster.start()
        n1, n2, n3 = cluster.nodes
        t0 = time.time()
        with n1.client(60) as c:
            replies = c.pipeline([{"op": "alert.create", "rule": rule(f"r{i}")}
                                  for i in range(args.rules)], 32, 60)
        acked = time.time() - t0
        assert all(r.get("ok") for r in replies), replies[:3]
        if args.creates_only:
            h.log(f"1. {args.rules} creates acknowledged in {acked:.2f} s")
            return
        took = wait(lambda: len(names(n2)) == args.rules
                    and len(names(n3)) == args.rules, 120, 0.2)
        out["create"] = {"rules": args.rules, "acked_s": round(acked, 2),
                         "everywhere_s": round(acked + (took or float("nan")), 2)}
        h.log(f"1. {args.rules} creates acknowledged in {acked:.2f} s, on every "
              f"node after {acked + (took or float('nan')):.2f} s")

        n3.kill()
        with n1.client(60) as c:
            c.pipeline([{"op": "alert.create", "rule": rule(f"late{i}")}
                        for i in range(args.catchup)], 32, 60)
            c.pipeline([{"op": "alert.delete", "name": f"r{i}"}
                        for i in range(args.catchup // 2)], 32, 60)
        want = names(n1)
        n3.start()
        n3.wait_ready(60)
        ready = time.time()
        took = wait(lambda: names(n3) == want, 120, 0.1)
        out["catchup"] = {"created": args.catchup, "deleted": args.catchup // 2,
                          "after_ready_s": round(took, 2) if took else None}
        h.log(f"2. restarted member listed the same {len(want)} rules "
              f"{took:.2f} s after ready ({args.catchup} created, "
              f"{args.catchup // 2} deleted while it was down)")
        cluster.wait_members_up(60)

        # 3. failover of a firing rule
        with n1.client(10) as c:
            c.request({"op": "alert.create", "rule": rule("fo", metric="fo.v")})
        stop = [False]
        import threading

        def feed():
            while not stop[0]:
                for n in cluster.nodes:
                    if n.alive():
                        try:
                            with n.client(2) as c:
                                c.send_lines([{"metric": "fo.v", "ts": h.now_ms(),
                                               "value": 500, "tags": {"k": n.name}}])
                        except OSError:
                            pass
                time.sleep(0.1)
        th = threading.Thread(target=feed, daemon=True)
        th.start()

        def get(node):
            with node.client(10) as c:
                return c.request({"op": "alert.get", "name": "fo"})
        wait(lambda: (get(n1).get("instances") or [{}])[0].get("state") == "firing", 20)
        owner = get(n1).get("owner")
        victim = cluster.by_name(owner)
        others = [n for n in cluster.nodes if n is not victim]
        killed = time.time()
        victim.kill()
        moved = wait(lambda: all(get(n).get("owner") not in (owner, None)
                                 for n in others), 20, 0.02)
        time.sleep(2)
        state = (get(others[0]).get("instances") or [{}])[0].get("state")
        stop[0] = True
        out["failover"] = {"owner_moved_s": round(moved, 2) if moved else None,
                           "state_after": state}
        h.log(f"3. owner {owner} killed: every other member names a new owner "
              f"after {moved:.2f} s; the instance is {state}")
    finally:
        cluster.stop_all(h.Checker("bench"))
        cluster.cleanup()
    h.log(f"load average after: {os.getloadavg()}")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
