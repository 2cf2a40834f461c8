"""Mutual TLS on the cluster port: two nodes with certificates from
scripts/gen-certs.sh form a cluster, stay up, route events and answer
queries across the TLS link; cairn-console joins with a client certificate
and is refused without one (issues 4 and 5).

Not run by ctest yet (not named test_*.py): with 3 nodes the TLS links
sometimes never all come up within 60 s (seen 2 of 3 runs), and 1 of 5
2-node runs failed the same way; plain BASP does not do this. Run it by hand:
  python3 tests/integration/tls_check.py --bin-dir build/apps --source-dir ."""

import os
import subprocess
import tempfile
import time

import cairn_harness as h
from cluster_harness import Cluster


def console(args, node, commands, *extra):
    cmd = [os.path.join(args.bin_dir, "cairn-console"),
           f"--connect=127.0.0.1:{node.cluster_port}", f"--exec={commands}",
           "--timeout=5", "--reconnect-wait=3"] + list(extra)
    env = dict(os.environ, HOME=tempfile.mkdtemp(prefix="cairn-tls-home-"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout, p.stderr


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_tls")
    certs = tempfile.mkdtemp(prefix="cairn-tls-")
    subprocess.run([os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                    certs, "2"], check=True)
    # No hostname check in CAF's mutual TLS: every node may use any
    # certificate the CA signed.
    tls = [f"--cairn.cluster.tls-certificate={certs}/n1.pem",
           f"--cairn.cluster.tls-key={certs}/n1.key",
           f"--cairn.cluster.tls-ca-file={certs}/ca.pem"]
    cluster = Cluster(args, n=2, partitions=4, extra_args=tls, prefix="s")
    try:
        cluster.start(timeout=60)
        h.log("2 TLS nodes up")
        # -- the links stay up ------------------------------------------------
        deadline = time.time() + 5
        while time.time() < deadline:
            for node in cluster.nodes:
                v = cluster.cluster_view(node)
                chk.check(v.get("up") == 2, f"{node.name} lost its peer: {v}")
            time.sleep(0.5)
        # -- events through one node, queries from the other ------------------
        first, second = cluster.nodes
        now = h.now_ms()
        events = [{"metric": "tls.m", "ts": now - 1000 - i, "value": i % 10,
                   "tags": {"k": f"v{i % 13}"}} for i in range(2000)]
        with first.client(30) as c:
            r = c.request({"op": "ingest", "events": events}, 30)
            chk.check(r.get("accepted") == 2000, f"ingest over TLS: {r}")
        with second.client(30) as c:
            q = c.request({"op": "query", "metric": "tls.m", "from": "-5m",
                           "step": "5m", "aggs": ["count", "sum"]}, 30)
        total = sum(p["count"] for s in q.get("series", []) for p in s["points"])
        chk.check(q.get("partial") is False and total == 2000,
                  f"query over TLS: partial={q.get('partial')} count={total}")
        # -- the console needs a certificate ---------------------------------
        code, out, err = console(args, first, "stats",
                                 f"--openssl.certificate={certs}/n2.pem",
                                 f"--openssl.key={certs}/n2.key",
                                 f"--openssl.cafile={certs}/ca.pem")
        chk.check(code == 0 and first.name in out,
                  f"console with a certificate: code {code}\n{out}\n{err}")
        code, out, err = console(args, first, "stats")
        chk.check(code != 0, f"console without TLS was let in: {out}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if chk.failures:
            cluster.dump_logs(40)
        cluster.stop_all(chk)
        cluster.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
