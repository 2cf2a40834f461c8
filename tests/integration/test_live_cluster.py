#!/usr/bin/env python3
"""Live subscriptions in a 3-node cluster (docs/protocol.md, "Live
subscriptions"; docs/architecture.md, "Live subscriptions").

Checked: a WebSocket client of one node subscribes to a group-by query; 60
series are ingested through another node, so that every node owns some of
them (each node's stats show events applied); the snapshot and every
update gather from every owner: the update of the window has all 60 series
with their exact counts and sums and says "partial": false; a second
window (events sent to the third node) streams as well; an NDJSON client of
the third node gets the same points; a late event for a window already
streamed, for a series the subscriber's node does not own, is streamed
again as a correction (the hub follows the other members' closed windows).
"""

import asyncio
import json
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402

try:
    import websockets  # noqa: E402
except ImportError:  # Debian's package under a non-Debian interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets  # noqa: E402

SERIES = 60


def events(ts, scale):
    return [{"metric": "lc.m", "ts": ts + i % 7, "value": (i + 1) * scale,
             "tags": {"k": f"s{i:02d}"}} for i in range(SERIES)]


def ingest(node, evs):
    with node.client(timeout=15) as c:
        r = c.request({"op": "ingest", "events": evs})
        if not r.get("ok") or r.get("accepted") != len(evs):
            raise h.TestFailure(f"ingest via {node.name}: {r}")


def points_by_key(msg, w):
    out = {}
    for s in msg.get("series", []):
        for p in s.get("points", []):
            if p["t"] == w:
                out[s["tags"].get("k")] = p
    return out


def next_window():
    now = h.now_ms()
    if 1000 - now % 1000 < 400:
        time.sleep((1000 - now % 1000 + 20) / 1000)
    now = h.now_ms()
    return now, now - now % 1000


async def run(cluster, chk):
    n1, n2, n3 = cluster.nodes
    query = {"metric": "lc.m", "group_by": ["k"], "aggs": ["count", "sum"],
             "from": "-30s"}
    ws = await websockets.connect(f"ws://127.0.0.1:{n2.http_port}/v1/live",
                                  open_timeout=10, max_size=1 << 24)
    await ws.send(json.dumps({"op": "subscribe", "id": "c", "query": query}))
    snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
    chk.check(snap.get("type") == "snapshot" and snap.get("ok") is True
              and snap.get("partial") is False, f"snapshot: {snap}")
    # An NDJSON subscriber on the third node.
    nd = socket.create_connection(("127.0.0.1", n3.tcp_port), timeout=10)
    ndf = nd.makefile("rb")
    nd.sendall((json.dumps({"op": "subscribe", "id": 9, "query": query}) + "\n").encode())
    r = json.loads(ndf.readline())
    chk.check(r.get("type") == "snapshot" and r.get("id") == 9, f"NDJSON snapshot: {r}")

    for via, scale in ((n1, 1.0), (n3, 2.0)):
        now, w = next_window()
        ingest(via, events(now, scale))
        got = None
        deadline = time.time() + 6
        while time.time() < deadline:
            try:
                m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.time()))
            except asyncio.TimeoutError:
                break
            if m.get("type") == "update" and m.get("id") == "c":
                pts = points_by_key(m, w)
                if len(pts) == SERIES:
                    got = m
                    break
        lag = h.now_ms() - (w + 1000 + 200)
        chk.require(got is not None, f"no update with all {SERIES} series for window {w}")
        h.log(f"window {w} via {via.name}: update {lag} ms after window end + grace")
        pts = points_by_key(got, w)
        bad = [k for i, k in enumerate(sorted(pts))
               if pts[k].get("count") != 1 or pts[k].get("sum") != (i + 1) * scale]
        chk.check(not bad, f"wrong points for {bad[:5]}: {[pts[k] for k in bad[:5]]}")
        chk.check(got.get("partial") is False, f"update is partial: {got.get('partial')}")
        chk.count(len(pts))
        # The NDJSON subscriber of n3 sees the same window.
        nd_pts = {}
        deadline = time.time() + 6
        while time.time() < deadline and len(nd_pts) < SERIES:
            m = json.loads(ndf.readline())
            if m.get("type") == "update":
                nd_pts.update(points_by_key(m, w))
        chk.check(nd_pts == pts, f"NDJSON update on n3 differs: {len(nd_pts)} series")
    # Every node owns some of the series.
    for node in cluster.nodes:
        with node.client(timeout=10) as c:
            st = c.request({"op": "stats"})
        chk.check(st.get("events_applied", 0) > 0,
                  f"{node.name} applied no event: the stream did not need it")
        h.log(f"{node.name}: {st.get('events_applied')} events applied")
    nd.close()
    await ws.close()
    await remote_correction(cluster, chk)


def applied(node):
    with node.client(timeout=10) as c:
        return c.request({"op": "stats"}).get("events_applied", 0)


async def remote_correction(cluster, chk):
    """A late event for a window already streamed, owned by another member
    than the subscriber's node: the subscriber streams the correction."""
    n1, n2, n3 = cluster.nodes
    now, w = next_window()
    key = None
    for i in range(20):  # a series n2 does not own: its events leave n2 alone
        before = applied(n2)
        ingest(n1, [{"metric": "lc.r", "ts": w + 100, "value": 1, "tags": {"k": f"r{i}"}}])
        if applied(n2) == before:
            key = f"r{i}"
            break
    chk.require(key is not None, "no series owned away from n2 among 20")
    ws = await websockets.connect(f"ws://127.0.0.1:{n2.http_port}/v1/live",
                                  open_timeout=10, max_size=1 << 24)
    await ws.send(json.dumps({"op": "subscribe", "id": "r", "query": {
        "metric": "lc.r", "where": {"k": key}, "aggs": ["count"], "from": "-60s"}}))
    snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
    counts = {p["t"]: p["count"] for s in snap.get("series", []) for p in s["points"]}
    chk.check(counts.get(w) == 1, f"snapshot of {key}: window {w} {counts}")
    # The window is closed (end + grace passed) before the late event.
    time.sleep(max(0, (w + 1000 + 200 + 800 - h.now_ms()) / 1000))
    ingest(n3, [{"metric": "lc.r", "ts": w + 500, "value": 1, "tags": {"k": key}}])
    sent = h.now_ms()
    got = None
    deadline = time.time() + 8
    while time.time() < deadline and got is None:
        try:
            m = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.time()))
        except asyncio.TimeoutError:
            break
        if m.get("type") == "update" and m.get("id") == "r":
            for s in m.get("series", []):
                for p in s.get("points", []):
                    if p["t"] == w and p.get("count") == 2:
                        got = m
    chk.check(got is not None and got.get("partial") is False,
              f"the correction of window {w} ({key}, owned away from n2) reached "
              f"n2's subscriber: {got}")
    if got is not None:
        h.log(f"remote correction streamed {h.now_ms() - sent} ms after the late event")
    await ws.close()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_live_cluster")
    cluster = Cluster(args, n=3, partitions=8, prefix="lc",
                      extra_args=["--cairn.live.grace=200ms"])
    try:
        cluster.start()
        asyncio.run(run(cluster, chk))
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
