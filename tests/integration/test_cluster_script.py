#!/usr/bin/env python3
"""scripts/cluster.sh with mutual TLS: `up 2`, then `add n3` for a name
that has no certificate yet. The script signs n3's certificate with the CA
in CAIRN_TLS_DIR (scripts/gen-certs.sh DIR --add n3), n3 joins through a
running member over TLS, the join saga succeeds, and every node lists three
members up. Events written before and after the join are all counted
through each node. `gen-certs.sh --add` refuses a name it already signed.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cairn_harness as h  # noqa: E402


def script(args, env, *argv, timeout=180):
    r = subprocess.run(["bash", os.path.join(args.source_dir, "scripts", "cluster.sh"),
                        *argv], capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, **env))
    return r.returncode, r.stdout + r.stderr


def port(base, name, kind):
    """cluster.sh's ports: node i uses base+10i (cluster), +1 NDJSON, +2 HTTP."""
    return base + 10 * int(name[1:]) + kind


def ask(base, name, req):
    with h.Client("127.0.0.1", port(base, name, 1), timeout=10) as c:
        return c.request(req)


def ingest(chk, base, name, first, n):
    evs = [{"metric": "cs.m", "ts": h.now_ms() - 1000, "value": 1,
            "tags": {"k": str(first + i)}} for i in range(n)]
    r = ask(base, name, {"op": "ingest", "events": evs})
    chk.check(r.get("ok") is True and r.get("accepted") == n,
              f"ingest of {n} through {name}: {r}")


def count_on(base, name):
    r = ask(base, name, {"op": "query", "metric": "cs.m", "from": "-10m",
                         "step": "1h", "aggs": ["count"]})
    total = sum(p["count"] for s in r.get("series", []) for p in s.get("points", []))
    return total, r.get("partial", False)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_cluster_script")
    tmp = tempfile.mkdtemp(prefix="cairn-it-clusterscript-")
    certs = os.path.join(tmp, "certs")
    base = h.free_base([10, 11, 12, 20, 21, 22, 30, 31, 32])
    env = {"CAIRN_BASE_PORT": str(base), "CAIRN_CLUSTER_DIR": os.path.join(tmp, "run"),
           "CAIRN_BIN": os.path.join(args.bin_dir, "cairn-node"), "CAIRN_TLS_DIR": certs,
           "CAIRN_PARTITIONS": "8", "CAIRN_NODE_ARGS": "--cairn.storage.sync=never"}
    try:
        r = subprocess.run(["bash", os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                            certs, "2"], capture_output=True, text=True, timeout=120)
        chk.require(r.returncode == 0, f"gen-certs.sh: {r.stderr}")
        chk.check(not os.path.exists(os.path.join(certs, "n3.pem")), "n3.pem before add")

        code, out = script(args, env, "up", "2")
        chk.require(code == 0, f"cluster.sh up 2: exit {code}\n{out[-2000:]}")
        ingest(chk, base, "n1", 0, 300)

        code, out = script(args, env, "add", "n3", timeout=300)
        chk.check(code == 0 and "n3 joined" in out, f"cluster.sh add n3: exit {code}\n{out[-3000:]}")
        pem = os.path.join(certs, "n3.pem")
        chk.require(os.path.exists(pem), "cluster.sh add did not create n3.pem")
        v = subprocess.run(["openssl", "verify", "-CAfile", os.path.join(certs, "ca.pem"), pem],
                           capture_output=True, text=True)
        chk.check(v.returncode == 0, f"n3.pem not signed by the cluster's CA: {v.stdout}{v.stderr}")
        ini = open(os.path.join(tmp, "run", "n3.ini"), encoding="utf-8").read()
        chk.check(f'tls-certificate = "{certs}/n3.pem"' in ini and "seeds = [" in ini,
                  f"n3.ini: {ini}")

        # Every node: three members, all up.
        for name in ("n1", "n2", "n3"):
            members = []
            deadline = time.time() + 30
            while time.time() < deadline:
                r = ask(base, name, {"op": "cluster"})
                members = sorted(m["name"] for m in r.get("members", []))
                if members == ["n1", "n2", "n3"] and r.get("up") == 3:
                    break
                time.sleep(0.5)
            chk.check(members == ["n1", "n2", "n3"] and r.get("up") == 3,
                      f"{name}'s view after the join: {members}, up {r.get('up')}")

        ingest(chk, base, "n3", 300, 200)
        for name in ("n1", "n2", "n3"):
            got, partial = None, True
            deadline = time.time() + 30
            while time.time() < deadline:
                got, partial = count_on(base, name)
                if got == 500 and not partial:
                    break
                time.sleep(0.5)
            chk.check(got == 500 and partial is False,
                      f"count through {name}: {got} (want 500), partial={partial}")

        r = subprocess.run(["bash", os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                            certs, "--add", "n3"], capture_output=True, text=True, timeout=60)
        chk.check(r.returncode != 0 and re.search(r"n3\.pem exists", r.stderr),
                  f"gen-certs.sh --add of a signed name: exit {r.returncode} {r.stderr}")
        h.log(f"n3 joined over TLS with a certificate cluster.sh signed; 500 events "
              f"counted through each of 3 nodes")
    finally:
        code, out = script(args, env, "down", timeout=120)
        if code != 0:
            h.log(f"cluster.sh down: exit {code}\n{out[-1000:]}")
        if chk.failures:
            for name in ("n1", "n2", "n3"):
                log = os.path.join(tmp, "run", f"{name}.log")
                if os.path.exists(log):
                    h.log(f"--- {name}.log (tail)\n" + open(log, errors="replace").read()[-3000:])
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
