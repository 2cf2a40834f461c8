"""Mutual TLS on the cluster port (issues 4 and 5): three nodes with
certificates from scripts/gen-certs.sh form a cluster, their links stay up,
events sent to one node are answered from the others; a node killed with
SIGKILL and restarted is let back in over TLS (its links come up again and
the hints written for it while it was down drain). cairn-console joins with
a client certificate and is refused without one. A fourth node in nobody's
config joins through a seed over TLS (docs/cluster.md, "Joining through
seeds"): every member opens its tunnel to it, it gets its share, and every
node answers complete and exact."""

import os
import subprocess
import tempfile
import time

import cairn_harness as h
from cluster_harness import Cluster

N = 3


def console(args, node, commands, *extra):
    cmd = [os.path.join(args.bin_dir, "cairn-console"),
           f"--connect=127.0.0.1:{node.cluster_port}", f"--exec={commands}",
           "--timeout=5", "--reconnect-wait=3"] + list(extra)
    env = dict(os.environ, HOME=tempfile.mkdtemp(prefix="cairn-tls-home-"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout, p.stderr


def ingest(chk, node, events, label):
    with node.client(30) as c:
        r = c.request({"op": "ingest", "events": events}, 30)
        chk.check(r.get("accepted") == len(events), f"{label}: {r}")


def total_count(node, metric):
    with node.client(30) as c:
        q = c.request({"op": "query", "metric": metric, "from": "-10m",
                       "step": "10m", "aggs": ["count"]}, 30)
    total = sum(p["count"] for s in q.get("series", []) for p in s["points"])
    return q.get("partial"), total


def check_counts(chk, cluster, want, when):
    """Every member answers complete with `want` events of tls.m."""
    for node in cluster.nodes:
        partial, total = total_count(node, "tls.m")
        chk.check(partial is False and total == want,
                  f"{when}, {node.name}: partial={partial} count={total} "
                  f"(want {want})")
        chk.count()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_tls")
    certs = tempfile.mkdtemp(prefix="cairn-tls-")
    subprocess.run([os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                    certs, str(N)], check=True, capture_output=True)
    # CAF's mutual TLS checks the chain, not the host name: every node may
    # present any certificate the CA signed.
    tls = [f"--cairn.cluster.tls-certificate={certs}/n1.pem",
           f"--cairn.cluster.tls-key={certs}/n1.key",
           f"--cairn.cluster.tls-ca-file={certs}/ca.pem"]
    cluster = Cluster(args, n=N, partitions=6, extra_args=tls, prefix="s")
    try:
        cluster.start(timeout=60)
        h.log(f"{N} TLS nodes up")
        # -- the links stay up (no flapping) ------------------------------------
        deadline = time.time() + 4
        while time.time() < deadline:
            for node in cluster.nodes:
                v = cluster.cluster_view(node)
                chk.check(v.get("up") == N, f"{node.name} lost a peer: {v}")
            time.sleep(0.5)
        # -- events through one node, queries from every node -------------------
        first, second, third = cluster.nodes
        now = h.now_ms()

        def batch(offset, n):
            return [{"metric": "tls.m", "ts": now - 1000 - offset - i,
                     "value": i % 10, "tags": {"k": f"v{i % 13}"}}
                    for i in range(n)]
        ingest(chk, first, batch(0, 2000), "ingest over TLS")
        for node in cluster.nodes:
            partial, total = total_count(node, "tls.m")
            chk.check(partial is False and total == 2000,
                      f"query on {node.name}: partial={partial} count={total}")
            chk.count()
        # -- a member killed and restarted comes back over TLS ------------------
        second.kill()
        h.log("s2 killed; ingesting through s1 (hints for s2)")
        cluster.wait_until(
            lambda: cluster.member(cluster.cluster_view(first), "s2")
            .get("status") == "unreachable", 30, "s1 to see s2 down")
        ingest(chk, first, batch(5000, 1500), "ingest while s2 is down")
        partial, _ = total_count(third, "tls.m")
        chk.check(partial is True, "a query without s2 is not marked partial")
        second.start()
        second.wait_ready(60)
        cluster.wait_members_up(60, hints_drained=True)
        h.log("s2 restarted and healed over TLS")
        check_counts(chk, cluster, 3500, "after the restart")
        # -- the console needs a certificate ----------------------------------
        code, out, err = console(args, first, "stats",
                                 f"--openssl.certificate={certs}/n2.pem",
                                 f"--openssl.key={certs}/n2.key",
                                 f"--openssl.cafile={certs}/ca.pem")
        chk.check(code == 0 and first.name in out,
                  f"console with a certificate: code {code}\n{out}\n{err}")
        code, out, err = console(args, first, "stats")
        chk.check(code != 0, f"console without TLS was let in: {out}")
        # -- a node in nobody's config joins over TLS -------------------------
        s4 = cluster.joiner("s4", [f"127.0.0.1:{second.cluster_port}"])
        cluster.nodes.append(s4)
        s4.start()
        s4.wait_ready(90)
        cluster.wait_members_up(60)

        def shared():
            m = cluster.cluster_view(first)["partition_map"]
            return m if m["owners"].count("s4") >= 1 and all(
                cluster.cluster_view(n)["partition_map"]["version"]
                == m["version"] for n in cluster.nodes) else None
        m = cluster.wait_until(shared, 90, "s4 to own its share, one map")
        h.log(f"s4 joined over TLS: map v{m['version']} {m['owners']}")
        ingest(chk, s4, batch(9000, 500), "ingest through the joined s4")
        check_counts(chk, cluster, 4000, "after the join")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
