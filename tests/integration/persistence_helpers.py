"""Helpers shared by the persistence tests (chaos, snapshot fallback, restart).

Built on cairn_harness (imported, not modified): restarting one Node on the
same storage path, SIGKILL, observing ping status during recovery, stats, and
an exact count/sum/min/max oracle that is fast for ~10^6 events.
"""

import json
import math
import os
import signal
import subprocess
import time

import cairn_harness as H


# -- node lifecycle -------------------------------------------------------------

def start(node):
    """(Re)starts `node` on its storage path (the log file is appended to)."""
    if node._log_file is not None:
        node._log_file.close()
        node._log_file = None
    node.start()
    return node


def sigkill(node):
    """SIGKILL and reap. Returns the exit code (-9 expected)."""
    if node.proc is None:
        return None
    if node.proc.poll() is None:
        node.proc.send_signal(signal.SIGKILL)
    try:
        return node.proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        return None


def wait_ready_observing(node, timeout=60.0):
    """Polls ping as fast as possible until status 'ready'. Returns
    (seconds from now until ready, set of statuses seen)."""
    t0 = time.time()
    seen = set()
    deadline = t0 + timeout
    while time.time() < deadline:
        if not node.alive():
            raise H.TestFailure(f"cairn-node exited with code {node.proc.returncode} "
                                f"before becoming ready")
        try:
            with H.Client("127.0.0.1", node.tcp_port, timeout=2.0) as c:
                while time.time() < deadline:
                    r = c.request({"op": "ping"}, timeout=2.0)
                    st = r.get("status")
                    seen.add(st)
                    if r.get("ok") is True and st == "ready":
                        return time.time() - t0, seen
                    time.sleep(0.005)
        except (OSError, TimeoutError, ValueError):
            seen.add("refused")
            time.sleep(0.01)
    raise H.TestFailure(f"node not ready after {timeout}s (seen {seen})")


def request(node, obj, timeout=30.0):
    with node.client(timeout) as c:
        return c.request(obj, timeout)


def stats(node):
    return request(node, {"op": "stats"})


def wait_exit(node, timeout=30.0):
    try:
        return node.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        return None


# -- exact oracle for count/sum/min/max ---------------------------------------

class ExactRef:
    """Events as (metric, tags tuple, ts, value); answers count/sum/min/max
    queries like docs/protocol.md for a tier of resolution `res`."""

    def __init__(self):
        self.events = []

    def add(self, metric, tags, ts, value):
        self.events.append((metric, tuple(sorted(tags.items())), ts, value))

    def extend(self, evs):
        for e in evs:
            self.add(e["metric"], e.get("tags") or {}, e["ts"], e["value"])

    def query(self, metric, frm, to, step, res, where=None, group_by=None):
        """{group tuple: {t: [count, fsum parts, min, max]}}"""
        where = where or {}
        group_by = group_by or []
        out = {}
        for m, tags, ts, v in self.events:
            if m != metric:
                continue
            td = dict(tags)
            if any(td.get(k) != w for k, w in where.items()):
                continue
            b = (ts // res) * res
            if not (frm <= b < to):
                continue
            t = (b // step) * step
            g = tuple(td.get(k) for k in group_by)
            p = out.setdefault(g, {}).get(t)
            if p is None:
                out[g][t] = [1, [v], v, v]
            else:
                p[0] += 1
                p[1].append(v)
                if v < p[2]:
                    p[2] = v
                if v > p[3]:
                    p[3] = v
        return out


def compare(chk, label, expected, reply, group_by=None):
    """Exact comparison of a query reply (aggs count,sum,min,max) with
    ExactRef.query output. Returns the number of differing points."""
    group_by = group_by or []
    diffs = 0
    if not chk.check(reply.get("ok") is True and not reply.get("partial"),
                     f"{label}: reply not ok / partial: {str(reply)[:300]}"):
        return 1
    got = {}
    for s in reply.get("series", []):
        tags = s.get("tags") or {}
        g = tuple(tags.get(k) for k in group_by)
        got[g] = {p["t"]: p for p in s.get("points", [])}
    if not chk.check(set(got) == set(expected),
                     f"{label}: groups differ: missing {sorted(set(expected) - set(got), key=str)[:5]} "
                     f"extra {sorted(set(got) - set(expected), key=str)[:5]}"):
        diffs += 1
    for g, pts in expected.items():
        gp = got.get(g, {})
        if not chk.check(set(gp) == set(pts),
                         f"{label} {g}: point times differ: missing "
                         f"{sorted(set(pts) - set(gp))[:5]} extra {sorted(set(gp) - set(pts))[:5]}"):
            diffs += 1
        for t, (n, vals, mn, mx) in pts.items():
            p = gp.get(t)
            if p is None:
                continue
            s = math.fsum(vals)
            chk.count(4)
            ok = (p.get("count") == n and p.get("min") == mn and p.get("max") == mx
                  and isinstance(p.get("sum"), (int, float))
                  and abs(p["sum"] - s) <= 1e-9 * max(1.0, abs(s)))
            if not chk.check(ok, f"{label} {g} t={t}: expected count={n} sum={s} "
                                 f"min={mn} max={mx}, got {json.dumps(p)}"):
                diffs += 1
    return diffs


def compare_queries(chk, c, ref, metric, frm, to, queries, label):
    """Runs each (name, where, group_by, step) of `queries` for `metric` over
    [frm, to) on the open client `c` and compares the reply exactly with the
    ExactRef `ref` (resolution 1000). Returns the number of differing points."""
    diffs = 0
    for name, where, gb, step in queries:
        exp = ref.query(metric, frm, to, step, 1000, where, gb)
        r = c.request(query_obj(metric, frm, to, step, where, gb), timeout=60.0)
        diffs += compare(chk, f"{label} {name}", exp, r, gb)
    return diffs


def query_obj(metric, frm, to, step, where=None, group_by=None):
    q = {"op": "query", "metric": metric, "from": frm, "to": to, "step": step,
         "aggs": ["count", "sum", "min", "max"]}
    if where:
        q["where"] = where
    if group_by:
        q["group_by"] = group_by
    return q


def total_count(node, metric, frm, to):
    r = request(node, query_obj(metric, frm, to, to - frm))
    return sum(p.get("count", 0) for s in r.get("series", []) for p in s["points"]), r
