"""Membership sagas under acknowledged ingest and kill -9 (docs/sagas.md).

4 members (s1..s4), 8 partitions, keyed ingest through s1 and s3 the whole
time (a failed request is retried with its key, so "acknowledged" is exact)
and a query loop on every node that checks the completeness invariant at
every answer (tests/integration/ack_ledger.py):

A. validation: unknown node, unknown saga, a partition already moving;
B. `decommission s4`: s4 owns nothing, is marked left; the cluster is 3;
C. `move` by hand: a partition of s1 to s2;
D. `join s4`: s4 is back and gets its share (3 -> 4 members);
E. an abort before the pivot: compensated, the partition stays put;
F. chaos: a move per (step, victim) for every step of the move saga
   (copy, freeze, ship, commit, drop) and victim (its source, its target, the
   saga coordinator's leader): the victim is SIGKILLed while the step is in
   progress (the test seam CAIRN_TEST_SAGA_STEP_DELAY_MS holds every step
   between its logged start and its action) and restarted; the saga must
   finish — succeeded, or compensated before its pivot — never stuck;
F2. a follower that missed a finish (it was down, and the leader restarted
   before it came back) shows it finished after it asked the leader;
G. afterwards: every node agrees on the map version and owners, and answers
   complete and exactly the acknowledged count.
"""

import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from ack_ledger import (QUERY, count_of, start_load,  # noqa: E402
                        stop_queries)

PARTITIONS = 8
STEP_DELAY_MS = 700
MOVE_STEPS = ["copy", "freeze", "ship", "commit", "drop"]
FINISHED = ("succeeded", "compensated", "stuck")


def request(node, req, timeout=10):
    with node.client(timeout) as c:
        return c.request(req, timeout)


def any_node(cluster, req, timeout=10):
    """`req` on the first live node that answers (followers pass saga ops to
    the leader); the last reply if none did."""
    last = None
    for node in cluster.nodes:
        if not node.alive():
            continue
        try:
            last = request(node, req, timeout)
        except (OSError, TimeoutError, ValueError) as e:
            last = {"error": repr(e)}
            continue
        if last.get("ok") is True:
            return last
        code = (last.get("error") or {}).get("code") if isinstance(
            last.get("error"), dict) else None
        if code not in ("unavailable", "timeout", None):
            return last  # a real answer (validation error)
    return last


def error_code(reply):
    e = reply.get("error")
    return e.get("code") if isinstance(e, dict) else None


def start(cluster, req, timeout=30):
    deadline = time.time() + timeout
    while True:
        r = any_node(cluster, req)
        if r and r.get("ok") is True:
            return r["id"]
        if r and error_code(r) not in ("unavailable", "timeout", None):
            raise h.TestFailure(f"{req} refused: {r}")
        if time.time() > deadline:
            raise h.TestFailure(f"{req} not started: {r}")
        time.sleep(0.3)


def saga(cluster, sid):
    r = any_node(cluster, {"op": "saga.get", "id": sid})
    return r.get("saga") if r and r.get("ok") else None


def wait_finished(cluster, sid, timeout=90):
    def done():
        s = saga(cluster, sid)
        return s if s and s.get("phase") in FINISHED else None
    return cluster.wait_until(done, timeout, f"saga {sid} to finish")


def wait_step(cluster, sid, step, timeout=30):
    """Until saga `sid` has begun move step `step` (its step_started record)."""
    index = MOVE_STEPS.index(step)

    def begun():
        s = saga(cluster, sid)
        if not s:
            return None
        for r in s.get("records", []):
            if r["kind"] == "step_started" and r["step"] == index:
                return s
        if s.get("phase") in FINISHED:
            raise h.TestFailure(f"saga {sid} finished before step {step}: {s}")
        return None
    return cluster.wait_until(begun, timeout, f"saga {sid} at step {step}")


def maps(cluster):
    out = {}
    for node in cluster.nodes:
        if node.alive():
            out[node.name] = cluster.cluster_view(node)["partition_map"]
    return out


def agreed_map(cluster, timeout=30):
    """Every live node holds the same map (version, owners, left)."""
    def same():
        m = maps(cluster)
        keys = {(x["version"], tuple(x["owners"]), tuple(x.get("left", [])))
                for x in m.values()}
        return next(iter(m.values())) if len(keys) == 1 else None
    return cluster.wait_until(same, timeout, "every node on one partition map")


def check_end_state(cluster, chk, ingest, queries, ledger):
    """Stops the ingest and the checking queries, then checks that every
    member agrees on one map and answers complete with exactly what was
    acknowledged. Returns the acknowledged total."""
    for t in ingest:
        t.stop_flag.set()
    for t in ingest:
        t.join(60)
    total = ledger.acked_total()
    h.log(f"ingest stopped: {total} acknowledged of {ledger.sent_total()} sent")
    cluster.wait_members_up(60, hints_drained=True)
    stop_queries(chk, queries)
    m = agreed_map(cluster)
    h.log(f"final map v{m['version']}: {m['owners']}")
    check_exact(cluster, chk, total)
    return total


def check_exact(cluster, chk, want, timeout=20, when=""):
    """Every node answers QUERY complete with exactly `want` events within
    `timeout` seconds."""
    for node in cluster.nodes:
        def exact():
            r = request(node, QUERY)
            return r if (r.get("partial") is False
                         and count_of(r) == want) else None
        try:
            cluster.wait_until(exact, timeout, f"{node.name} complete and exact{when}")
        except h.TestFailure as e:
            r = request(node, QUERY)
            chk.check(False, f"{e}: counted {count_of(r)} of {want}: "
                             f"{str(r)[:300]}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_sagas")
    os.environ["CAIRN_TEST_SAGA_STEP_DELAY_MS"] = str(STEP_DELAY_MS)
    cluster = Cluster(args, n=4, partitions=PARTITIONS, prefix="s",
                      extra_args=["--cairn.cluster.handoff-chunk-bytes=16384",
                                  "--cairn.http.web-root="
                                  + os.path.join(args.source_dir, "web")])
    threads = []
    try:
        cluster.start()
        s1, s2, s3, s4 = cluster.nodes
        ledger, _, ingest, queries = start_load(cluster, chk, [s1, s3], "saga")
        threads = ingest + queries
        m0 = agreed_map(cluster)
        h.log(f"map v{m0['version']}: {m0['owners']}")

        # -- A. validation ----------------------------------------------------
        r = any_node(cluster, {"op": "saga.move", "partition": 0, "node": "nope"})
        chk.check(error_code(r) == "bad_request", f"unknown node: {r}")
        r = any_node(cluster, {"op": "saga.move", "partition": 99, "node": "s2"})
        chk.check(error_code(r) == "bad_request", f"unknown partition: {r}")
        owner0 = m0["owners"][0]
        r = any_node(cluster, {"op": "saga.move", "partition": 0, "node": owner0})
        chk.check(error_code(r) == "bad_request", f"move to its owner: {r}")
        r = any_node(cluster, {"op": "saga.get", "id": "no-such-saga"})
        chk.check(error_code(r) == "unknown_saga", f"unknown saga: {r}")
        r = any_node(cluster, {"op": "saga.decommission"})
        chk.check(error_code(r) == "bad_request", f"decommission without node: {r}")

        # -- B. decommission s4 ---------------------------------------------
        sid = start(cluster, {"op": "saga.decommission", "node": "s4"})
        # A second membership saga while it runs is a conflict.
        r = any_node(cluster, {"op": "saga.rebalance"})
        chk.check(error_code(r) == "saga_conflict", f"second membership saga: {r}")
        s = wait_finished(cluster, sid, 120)
        chk.check(s["phase"] == "succeeded", f"decommission: {s}")
        m = agreed_map(cluster)
        chk.check("s4" not in m["owners"] and "s4" in m.get("left", []),
                  f"after decommission s4 owns nothing and has left: {m}")
        h.log(f"decommissioned s4: map v{m['version']} {m['owners']}, "
              f"progress {s.get('progress')}")
        chk.check(len(s.get("children", [])) >= PARTITIONS // 4,
                  f"decommission ran its moves as child sagas: {s.get('children')}")

        # -- C. a move by hand ----------------------------------------------
        p = m["owners"].index("s1")
        sid = start(cluster, {"op": "saga.move", "partition": p, "node": "s2"})
        r = any_node(cluster, {"op": "saga.move", "partition": p, "node": "s3"})
        chk.check(error_code(r) == "saga_conflict", f"partition already moving: {r}")
        s = wait_finished(cluster, sid)
        chk.check(s["phase"] == "succeeded", f"move: {s}")
        m = agreed_map(cluster)
        chk.check(m["owners"][p] == "s2", f"partition {p} now at s2: {m}")
        prog = s.get("progress", {})
        chk.check(prog.get("bytes_moved", 0) > 0, f"a move ships bytes: {s}")
        # The partition took writes while its base was pre-copied; the freeze
        # exported only the delta since (docs/sagas.md, "Pre-copy").
        frozen = [json.loads(r["detail"]) for r in s.get("records", [])
                  if r["kind"] == "step_done"
                  and r["step"] == MOVE_STEPS.index("freeze")]
        chk.check(frozen and frozen[-1].get("delta") is True,
                  f"the freeze of a move exports a delta: {frozen}")

        # -- D. s4 joins again -----------------------------------------------
        sid = start(cluster, {"op": "saga.join", "node": "s4"})
        s = wait_finished(cluster, sid, 120)
        chk.check(s["phase"] == "succeeded", f"join: {s}")
        m = agreed_map(cluster)
        counts = {n: m["owners"].count(n) for n in ("s1", "s2", "s3", "s4")}
        chk.check("s4" not in m.get("left", []) and all(c == PARTITIONS // 4
                                                        for c in counts.values()),
                  f"after join every member owns {PARTITIONS // 4}: {counts}")

        # -- E. abort before the pivot ---------------------------------------
        p = m["owners"].index("s3")
        sid = start(cluster, {"op": "saga.move", "partition": p, "node": "s1"})
        wait_step(cluster, sid, "ship")
        r = any_node(cluster, {"op": "saga.abort", "id": sid})
        chk.check(r.get("ok") is True, f"abort: {r}")
        s = wait_finished(cluster, sid)
        chk.check(s["phase"] == "compensated", f"aborted move: {s}")
        m = agreed_map(cluster)
        chk.check(m["owners"][p] == "s3", f"an aborted move leaves {p} at s3: {m}")

        # -- F. chaos --------------------------------------------------------
        run = 0
        outcomes = {}
        for step in MOVE_STEPS:
            for victim_kind in ("source", "target", "leader"):
                m = agreed_map(cluster)
                p = (run * 3 + 1) % PARTITIONS
                run += 1
                source = m["owners"][p]
                active = [n for n in ("s1", "s2", "s3", "s4")
                          if n not in m.get("left", [])]
                target = active[(active.index(source) + 1) % len(active)]
                sid = start(cluster, {"op": "saga.move", "partition": p,
                                      "node": target})
                wait_step(cluster, sid, step)
                victim = cluster.by_name({"source": source, "target": target,
                                          "leader": "s1"}[victim_kind])
                victim.kill()
                h.log(f"chaos {run}: move p{p} {source}->{target}, killed "
                      f"{victim.name} ({victim_kind}) at {step}, "
                      f"{ledger.acked_total()} acknowledged")
                time.sleep(1)
                victim.start()
                victim.wait_ready(60)
                s = wait_finished(cluster, sid, 120)
                outcomes[(step, victim_kind)] = s["phase"]
                chk.check(s["phase"] != "stuck", f"chaos {run}: stuck: {s}")
                if step in ("commit", "drop"):
                    chk.check(s["phase"] == "succeeded",
                              f"chaos {run}: past the pivot a move finishes: {s}")
                m = agreed_map(cluster)
                want = target if s["phase"] == "succeeded" else source
                chk.check(m["owners"][p] == want,
                          f"chaos {run}: p{p} at {want} after {s['phase']}: {m}")
        h.log(f"chaos outcomes: {outcomes}")

        # -- F2. a follower that missed a finish catches up ------------------
        # s4 (no ingest goes through it) holds a move's records up to its
        # ship step, is killed, the move is aborted (it needs only s1 and s2),
        # then the leader s1 restarts — forgetting the finishes it would push
        # for 30 s — before s4 comes back: s4's copy says "running" until s4
        # asks the leader for it (docs/sagas.md, "The replicated log").
        m = agreed_map(cluster)
        p = next(i for i, o in enumerate(m["owners"]) if o in ("s1", "s2"))
        target = "s2" if m["owners"][p] == "s1" else "s1"
        sid = start(cluster, {"op": "saga.move", "partition": p, "node": target})
        wait_step(cluster, sid, "ship")
        s4.kill()
        r = any_node(cluster, {"op": "saga.abort", "id": sid})
        chk.check(r.get("ok") is True, f"abort with s4 down: {r}")
        s = wait_finished(cluster, sid)
        chk.check(s["phase"] == "compensated", f"aborted move with s4 down: {s}")
        s1.kill()
        s1.start()
        s1.wait_ready(60)
        cluster.wait_until(
            lambda: (request(s1, {"op": "stats"}).get("sagas") or {}).get("leading"),
            30, "s1 to lead again")
        s4.start()
        s4.wait_ready(60)
        first = request(s4, {"op": "stats"}).get("sagas") or {}
        stale = any(x.get("id") == sid for x in first.get("running", []))
        h.log(f"s4 after its restart: {sid} {'still running' if stale else 'finished'} "
              f"in its copy")
        view = first
        deadline = time.time() + 40
        while any(x.get("id") == sid for x in view.get("running", [])) \
                and time.time() < deadline:
            time.sleep(1)
            view = request(s4, {"op": "stats"}).get("sagas") or {}
        chk.check(not any(x.get("id") == sid for x in view.get("running", [])),
                  f"s4 shows the move it missed as finished: {str(view)[:300]}")

        # -- G. the end state ------------------------------------------------
        check_end_state(cluster, chk, ingest, queries, ledger)
        r = any_node(cluster, {"op": "saga.list", "limit": 200})
        stuck = [x["id"] for x in r.get("sagas", []) if x.get("phase") == "stuck"]
        running = [x["id"] for x in r.get("sagas", [])
                   if x.get("phase") not in FINISHED]
        chk.check(not stuck and not running,
                  f"every saga finished, none stuck: stuck={stuck} running={running}")
        st = request(s2, {"op": "stats"})
        chk.check(isinstance(st.get("sagas"), dict) and st["sagas"].get("leader"),
                  f"stats shows the sagas: {str(st.get('sagas'))[:300]}")
        # The dashboard's overview shows them (headless Chromium).
        browser_dir = os.path.join(args.source_dir, "tests", "browser")
        shot = os.path.join(os.environ.get("CAIRN_SHOTS", s1.tmp), "sagas.png")
        p = subprocess.run(["node", os.path.join(browser_dir, "dashboard_sagas.mjs"),
                            f"http://127.0.0.1:{s1.http_port}", shot],
                           capture_output=True, timeout=120, cwd=browser_dir)
        try:
            out = json.loads(p.stdout.decode().strip().splitlines()[-1])
        except (ValueError, IndexError):
            out = {"errors": [p.stderr.decode()[-400:]]}
        h.log(f"dashboard: {out.get('info')}, {len(out.get('rows', []))} rows, "
              f"screenshot {shot}")
        chk.check(not out.get("errors"), f"dashboard errors: {out.get('errors')}")
        chk.check("coordinator: s1" in out.get("info", "")
                  and "0 running" in out.get("info", ""),
                  f"dashboard names the leader, nothing running: "
                  f"{out.get('info')}")
        types = {r[1] for r in out.get("rows", []) if len(r) > 4}
        chk.check("move" in types and any(r[3] == "succeeded" for r in out.get("rows", [])),
                  f"dashboard lists the recent sagas: {out.get('rows')}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        for t in threads:
            t.stop_flag.set()
        cluster.finish(chk, 80)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
