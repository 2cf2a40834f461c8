#!/usr/bin/env python3
"""Live subscriptions (docs/protocol.md, "Live subscriptions") against a real
node, with a Python WebSocket client (Debian python3-websockets) and raw
NDJSON sockets.

Checked:
- subscribe on /v1/live: the snapshot first (shaped like a query reply, with
  the id and type "snapshot"), then for a window that closed an update with
  exactly that window's points (count, sum), not before the window end plus
  cairn.live.grace and promptly after it; a late event for a closed window
  is streamed again (a correction with the new count);
- several subscriptions per socket, each update carrying its own id and
  only its own query's points; the same query from two sockets is one
  subscription (cairn_live_subscriptions), cairn_live_clients counts sockets;
- running: true streams the open window's value ("running");
- unsubscribe answers "unsubscribed" and stops that id's updates only;
  closing a socket drops its subscriptions (gauges fall back);
- a client message over cairn.http.ws-max-message closes the socket (1009);
- errors with stable codes: bad JSON and missing/invalid query fields
  (bad_request naming the field), duplicate id, unknown_subscription,
  unknown_op, too_many_subscriptions; subscribe over POST /api is refused;
- a slow consumer (small receive buffer, not reading) makes updates
  coalesce: cairn_live_coalesced_total grows, the node's memory stays
  bounded, and once it reads it gets the newest window;
- the NDJSON port: subscribe turns the connection into a stream whose
  messages interleave with replies to later requests (a ping), nc style;
- 1,000 WebSockets at once, 10 distinct queries: every socket gets its
  update; cairn.http.max-websockets refuses the ones over the limit with
  503; closing them all brings the gauges back;
- keep-alive (cairn.http.ws-ping-interval, a node of its own): a client's
  ping is answered; a quiet socket is pinged within the interval; one that
  never answers is closed; one that answers stays open and works.
"""

import asyncio
import base64
import json
import os
import resource
import socket
import struct
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

try:
    import websockets  # noqa: E402
except ImportError:  # Debian's package under a non-Debian interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets  # noqa: E402

GRACE_MS = 100
MAX_SUBS = 6
MANY = 1000
MAX_WS = MANY + 10
WS_MAX_MESSAGE = 4096


def metrics(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics",
                                timeout=5) as r:
        out = {}
        for line in r.read().decode().splitlines():
            if line and not line.startswith("#"):
                name, value = line.rsplit(" ", 1)
                out[name] = float(value)
        return out


def post_api(node, obj):
    """POST /api; returns (HTTP status, reply): error replies come with
    their status and the protocol's JSON body (docs/protocol.md)."""
    status, _, body = h.http_request(node.http_port, "POST", "/api",
                                     json.dumps(obj), timeout=5)
    return status, json.loads(body)


def ingest(node, events):
    with node.client(timeout=10) as c:
        r = c.request({"op": "ingest", "events": events})
        if not r.get("ok") or r.get("accepted") != len(events):
            raise h.TestFailure(f"ingest failed: {r}")


def window_of(ts):
    return ts - ts % 1000


def points_of(msg):
    """{(tags as tuple): {t: point}} of a reply-shaped message."""
    out = {}
    for s in msg.get("series", []):
        key = tuple(sorted(s.get("tags", {}).items()))
        out[key] = {p["t"]: p for p in s.get("points", [])}
    return out


async def connect(node, **kw):
    return await websockets.connect(f"ws://127.0.0.1:{node.http_port}/v1/live",
                                    max_size=1 << 26, open_timeout=10, **kw)


async def recv(ws, timeout=5.0):
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def wait_msg(ws, pred, timeout=5.0, seen=None):
    """Receives until pred(msg); the others go to `seen` (if given)."""
    deadline = time.time() + timeout
    while True:
        left = deadline - time.time()
        if left <= 0:
            return None
        try:
            msg = await recv(ws, left)
        except asyncio.TimeoutError:
            return None
        if pred(msg):
            return msg
        if seen is not None:
            seen.append(msg)


def is_update(id_, t=None):
    def pred(m):
        if m.get("id") != id_ or m.get("type") != "update":
            return False
        if t is None:
            return True
        return any(t in pts for pts in points_of(m).values())
    return pred


async def request(ws, obj, timeout=5.0):
    await ws.send(json.dumps(obj))
    return await wait_msg(ws, lambda m: m.get("id") == obj.get("id")
                          and m.get("type") != "update", timeout)


def next_window_start(margin_ms=300):
    """Sleeps until at least margin_ms are left in the current second and
    returns now (so events sent now fall into one window)."""
    now = h.now_ms()
    if 1000 - now % 1000 < margin_ms:
        time.sleep((1000 - now % 1000 + 20) / 1000)
    return h.now_ms()


async def basics(node, chk):
    ws = await connect(node)
    snap = await request(ws, {"op": "subscribe", "id": "a",
                              "query": {"metric": "lv.a", "from": "-1m",
                                        "aggs": ["count", "sum"]}})
    chk.require(snap is not None, "no snapshot for subscription a")
    chk.check(snap.get("ok") is True and snap.get("type") == "snapshot"
              and snap.get("step") == 1000 and snap.get("series") == [],
              f"snapshot of an empty metric: {snap}")
    # One window of five events.
    now = next_window_start()
    w = window_of(now)
    ingest(node, [{"metric": "lv.a", "ts": now, "value": v} for v in range(1, 6)])
    up = await wait_msg(ws, is_update("a", w), timeout=4)
    got_at = h.now_ms()
    chk.require(up is not None, f"no update for window {w}")
    p = points_of(up).get((), {}).get(w, {})
    chk.check(p.get("count") == 5 and p.get("sum") == 15,
              f"update of window {w}: {up}")
    chk.check(up.get("ok") is True and "step" in up and "partial" in up,
              f"an update is shaped like a query reply: {up}")
    lag = got_at - (w + 1000 + GRACE_MS)
    h.log(f"first update {lag} ms after window end + grace")
    chk.check(lag >= -30, f"update arrived {-lag} ms before the window closed")
    chk.check(lag < 1000, f"update arrived {lag} ms after the window closed")
    # A late event for that closed window is streamed again.
    ingest(node, [{"metric": "lv.a", "ts": w + 1, "value": 10}])
    corr = await wait_msg(ws, lambda m: is_update("a", w)(m)
                          and points_of(m)[()][w].get("count") == 6, timeout=4)
    chk.check(corr is not None and points_of(corr)[()][w]["sum"] == 25,
              f"no correction with count 6 / sum 25 for window {w}: {corr}")

    # Several subscriptions on one socket.
    for sub in ({"op": "subscribe", "id": 2,
                 "query": {"metric": "lv.b", "group_by": ["host"], "aggs": ["max"]}},
                {"op": "subscribe", "id": "c",
                 "query": {"aggs": ["max"], "metric": "lv.a"}},
                {"op": "subscribe", "id": "r", "running": True,
                 "query": {"metric": "lv.run", "aggs": ["count"]}}):
        r = await request(ws, sub)
        chk.check(r is not None and r.get("type") == "snapshot" and r.get("ok") is True,
                  f"subscribe {sub['id']}: {r}")
    now = next_window_start(500)
    w = window_of(now)
    ingest(node, [{"metric": "lv.a", "ts": now, "value": 7},
                  {"metric": "lv.b", "ts": now, "value": 3, "tags": {"host": "x"}},
                  {"metric": "lv.b", "ts": now + 1, "value": 4, "tags": {"host": "y"}}])
    # The running value: events of lv.run keep arriving meanwhile.
    stop_run = threading.Event()

    def feed_running():
        while not stop_run.is_set():
            ingest(node, [{"metric": "lv.run", "ts": h.now_ms(), "value": 1}])
            time.sleep(0.1)
    feeder = threading.Thread(target=feed_running, daemon=True)
    feeder.start()
    seen = []
    want = {"a": None, 2: None, "c": None}
    running = None
    deadline = time.time() + 5
    while time.time() < deadline and (any(v is None for v in want.values())
                                      or running is None):
        m = await wait_msg(ws, lambda m: True, timeout=deadline - time.time())
        if m is None:
            break
        if m.get("type") == "running" and m.get("id") == "r":
            running = m
        if m.get("type") == "update" and m.get("id") in want \
                and any(w in pts for pts in points_of(m).values()):
            want[m["id"]] = m
        seen.append(m)
    stop_run.set()
    feeder.join()
    chk.check(want["a"] is not None and points_of(want["a"])[()][w]["count"] == 1
              and points_of(want["a"])[()][w]["sum"] == 7, f"update a: {want['a']}")
    chk.check(want["c"] is not None and points_of(want["c"])[()][w] == {"t": w, "max": 7},
              f"update c (max only): {want['c']}")
    b = points_of(want[2]) if want[2] else {}
    chk.check(b.get((("host", "x"),), {}).get(w, {}).get("max") == 3
              and b.get((("host", "y"),), {}).get(w, {}).get("max") == 4,
              f"update 2 (group by host): {want[2]}")
    chk.check(running is not None, "no running value for a subscription with running: true")
    chk.check(all(m.get("id") in ("a", 2, "c", "r") for m in seen),
              f"a message with a foreign id: {[m for m in seen if m.get('id') not in ('a', 2, 'c', 'r')]}")

    # The same query from another socket is the same subscription.
    ws2 = await connect(node)
    r = await request(ws2, {"op": "subscribe", "id": "x",
                            "query": {"aggs": ["count", "sum"], "from": "-1m",
                                      "metric": "lv.a"}})
    chk.check(r is not None and r.get("type") == "snapshot", f"subscribe x: {r}")
    m = metrics(node)
    chk.check(m.get("cairn_live_subscriptions") == 4,
              f"4 distinct queries (a = x, 2, c, r): {m.get('cairn_live_subscriptions')}")
    chk.check(m.get("cairn_live_clients") == 2, f"2 clients: {m.get('cairn_live_clients')}")

    # Errors.
    cases = [
        ({"op": "subscribe", "id": "e1"}, "bad_request", "query"),
        ({"op": "subscribe", "id": "e2", "query": {"from": "-1m"}}, "bad_request", "metric"),
        ({"op": "subscribe", "id": "e3", "query": {"metric": "m", "aggs": ["p200"]}},
         "bad_request", "agg"),
        ({"op": "subscribe", "id": "e4", "query": {"metric": "m"}, "running": 3},
         "bad_request", "running"),
        ({"op": "subscribe", "query": {"metric": "m"}}, "bad_request", "id"),
        ({"op": "subscribe", "id": "a", "query": {"metric": "m"}}, "bad_request", "already"),
        ({"op": "unsubscribe", "id": "nope"}, "unknown_subscription", "nope"),
        ({"op": "query", "id": "q", "metric": "m"}, "unknown_op", "subscribe"),
    ]
    for req, code, word in cases:
        await ws.send(json.dumps(req))
        r = await wait_msg(ws, lambda m: m.get("ok") is False, timeout=5)
        err = (r or {}).get("error", {})
        chk.check(err.get("code") == code and word in err.get("message", "")
                  and r.get("id") == req.get("id"),
                  f"{req}: expected {code} naming '{word}', got {r}")
    await ws.send("{not json")
    r = await wait_msg(ws, lambda m: m.get("ok") is False, timeout=5)
    chk.check((r or {}).get("error", {}).get("code") == "bad_request", f"bad JSON: {r}")
    # Too many: a, 2, c, r + two more, then the limit.
    for i in range(MAX_SUBS - 4):
        r = await request(ws, {"op": "subscribe", "id": f"f{i}",
                               "query": {"metric": f"lv.f{i}"}})
        chk.check(r is not None and r.get("type") == "snapshot", f"subscribe f{i}: {r}")
    r = await request(ws, {"op": "subscribe", "id": "over", "query": {"metric": "lv.f"}})
    chk.check((r or {}).get("error", {}).get("code") == "too_many_subscriptions",
              f"subscription {MAX_SUBS + 1}: {r}")
    status, r = post_api(node, {"op": "subscribe", "id": 1, "query": {"metric": "m"}})
    chk.check(status == 400 and r.get("error", {}).get("code") == "bad_request"
              and "stream" in r["error"].get("message", ""), f"subscribe over /api: {status} {r}")

    # Unsubscribe stops that id only.
    r = await request(ws, {"op": "unsubscribe", "id": "a"})
    chk.check(r is not None and r.get("ok") is True and r.get("type") == "unsubscribed",
              f"unsubscribe a: {r}")
    now = next_window_start()
    w = window_of(now)
    ingest(node, [{"metric": "lv.a", "ts": now, "value": 1}])
    seen = []
    c = await wait_msg(ws, is_update("c", w), timeout=4, seen=seen)
    chk.check(c is not None, "no update for c after a was unsubscribed")
    await asyncio.sleep(0.5)
    while True:
        m = await wait_msg(ws, lambda m: True, timeout=0.2)
        if m is None:
            break
        seen.append(m)
    chk.check(not any(m.get("id") == "a" for m in seen),
              f"an update for the unsubscribed id a: {[m for m in seen if m.get('id') == 'a']}")
    # x (same query as a, other socket) still gets it.
    x = await wait_msg(ws2, is_update("x", w), timeout=4)
    chk.check(x is not None and points_of(x)[()][w]["count"] == 1, f"update x: {x}")

    await ws2.close()
    await ws.close()
    # A message over cairn.http.ws-max-message closes the socket (1009).
    big = await connect(node)
    await big.send("x" * (WS_MAX_MESSAGE + 1))
    try:
        await asyncio.wait_for(big.recv(), 5)
        chk.check(False, "a message over ws-max-message was answered")
    except websockets.exceptions.ConnectionClosed as e:
        chk.check(e.code == 1009, f"oversized message: closed with {e.code}, not 1009")
    deadline = time.time() + 5
    while time.time() < deadline:
        m = metrics(node)
        if m.get("cairn_live_clients") == 0 and m.get("cairn_live_subscriptions") == 0:
            break
        await asyncio.sleep(0.1)
    chk.check(m.get("cairn_live_clients") == 0 and m.get("cairn_live_subscriptions") == 0,
              f"gauges after every socket closed: clients {m.get('cairn_live_clients')}, "
              f"subscriptions {m.get('cairn_live_subscriptions')}")


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


async def slow_consumer(node, chk):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", node.http_port))
    ws = await websockets.connect(f"ws://127.0.0.1:{node.http_port}/v1/live",
                                  sock=sock, max_size=1 << 26, max_queue=1,
                                  read_limit=4096, ping_interval=None)
    subs = 5
    for i in range(subs):
        r = await request(ws, {"op": "subscribe", "id": f"s{i}",
                               "query": {"metric": "lv.big", "group_by": ["k"],
                                         "aggs": ["count", "sum", "max", "min"][: i % 4 + 1],
                                         "from": "-2s"}})
        chk.require(r is not None and r.get("type") == "snapshot", f"subscribe s{i}: {r}")
    base = metrics(node).get("cairn_live_coalesced_total", 0)
    rss0 = rss_bytes(node.proc.pid)
    # ~3000 series per second for 6 s; the socket is not read meanwhile.
    windows = []
    with node.client(timeout=30) as c:
        for sec in range(6):
            now = h.now_ms()
            windows.append(window_of(now))
            lines = [json.dumps({"metric": "lv.big", "ts": now, "value": i,
                                 "tags": {"k": f"key-{i:05d}"}}).encode()
                     for i in range(3000)]
            c.send_lines(lines)
            r = c.request({"op": "flush"})
            chk.check(r.get("accepted") == 3000, f"flush: {r}")
            time.sleep(max(0, 1 - (h.now_ms() - now) / 1000))
            if sec == 4:
                # A ping while the node's writes to this socket are stuck:
                # Beast's pong must wait for the update frame the session
                # is writing itself, not cut into it (ws_write_gate).
                pong_waiter = await ws.ping(b"mid-stream")
    time.sleep(1.5)
    m = metrics(node)
    coalesced = m.get("cairn_live_coalesced_total", 0) - base
    rss1 = rss_bytes(node.proc.pid)
    h.log(f"slow consumer: {coalesced:.0f} updates coalesced, RSS {rss0 >> 20} -> "
          f"{rss1 >> 20} MiB")
    chk.check(coalesced > 0, "no update was coalesced for a client that did not read")
    chk.check(rss1 - rss0 < 256 << 20, f"RSS grew by {(rss1 - rss0) >> 20} MiB")
    # Now read: every subscription ends with the newest window.
    newest = {}
    counts = {}
    while True:
        try:
            msg = json.loads(await asyncio.wait_for(ws.recv(), 3))
        except asyncio.TimeoutError:
            break
        if msg.get("type") == "update":
            counts[msg["id"]] = counts.get(msg["id"], 0) + 1
            ts = [t for pts in points_of(msg).values() for t in pts]
            if ts:
                newest[msg["id"]] = max(newest.get(msg["id"], 0), max(ts))
    h.log(f"slow consumer read afterwards: updates per id {counts}")
    try:
        await asyncio.wait_for(pong_waiter, 5)
        ponged = True
    except (asyncio.TimeoutError, websockets.ConnectionClosed):
        ponged = False
    chk.check(ponged, "the ping sent while the node's writes were stuck got no pong")
    for i in range(subs):
        chk.check(newest.get(f"s{i}", 0) >= windows[-1],
                  f"s{i}: newest window {newest.get(f's{i}')} < {windows[-1]}")
    chk.check(sum(counts.values()) < subs * len(windows),
              f"the slow client got every update ({counts}): nothing was dropped")
    await ws.close()


def ndjson_stream(node, chk):
    s = socket.create_connection(("127.0.0.1", node.tcp_port), timeout=5)
    f = s.makefile("rb")

    def line():
        return json.loads(f.readline())

    s.sendall(b'{"op":"subscribe","id":"n1","query":{"metric":"lv.nd","aggs":["sum"]}}\n')
    snap = line()
    chk.check(snap.get("id") == "n1" and snap.get("type") == "snapshot", f"NDJSON snapshot: {snap}")
    now = next_window_start()
    w = window_of(now)
    ingest(node, [{"metric": "lv.nd", "ts": now, "value": 2.5}])
    s.sendall(b'{"op":"ping","id":"p"}\n')
    got = [line(), line()]
    pong = [m for m in got if m.get("id") == "p"]
    up = [m for m in got if m.get("id") == "n1"]
    chk.check(len(pong) == 1 and pong[0].get("ok") is True, f"ping on a streaming connection: {got}")
    chk.check(len(up) == 1 and up[0].get("type") == "update"
              and points_of(up[0])[()][w]["sum"] == 2.5, f"NDJSON update: {got}")
    s.sendall(b'{"op":"unsubscribe","id":"n1"}\n')
    r = line()
    chk.check(r.get("type") == "unsubscribed" and r.get("id") == "n1", f"NDJSON unsubscribe: {r}")
    s.close()


async def many_sockets(node, chk):
    base = metrics(node)
    t0 = time.time()
    sockets = []
    for batch in range(MANY // 100):
        sockets += await asyncio.gather(*[connect(node) for _ in range(100)])
    h.log(f"{len(sockets)} WebSockets open in {time.time() - t0:.1f}s")
    snaps = await asyncio.gather(*[
        request(ws, {"op": "subscribe", "id": i,
                     "query": {"metric": f"lv.s{i % 10}", "from": "-10s"}}, timeout=30)
        for i, ws in enumerate(sockets)])
    chk.check(all(s is not None and s.get("type") == "snapshot" for s in snaps),
              f"{sum(1 for s in snaps if not s or s.get('type') != 'snapshot')} of "
              f"{MANY} subscriptions got no snapshot")
    m = metrics(node)
    chk.check(m.get("cairn_live_clients") == MANY and m.get("cairn_live_subscriptions") == 10,
              f"{MANY} clients on 10 queries: {m.get('cairn_live_clients')} / "
              f"{m.get('cairn_live_subscriptions')}")
    # Over the limit: 503.
    refused = 0
    extra = []
    for _ in range(MAX_WS - MANY + 3):
        try:
            extra.append(await connect(node))
        except websockets.exceptions.InvalidStatusCode as e:
            refused += 1
            chk.check(e.status_code == 503, f"refused with {e.status_code}")
    chk.check(len(extra) == MAX_WS - MANY and refused == 3,
              f"max-websockets {MAX_WS}: {len(extra)} more accepted, {refused} refused")
    for ws in extra:
        await ws.close()
    now = next_window_start()
    w = window_of(now)
    ingest(node, [{"metric": f"lv.s{i}", "ts": now, "value": i} for i in range(10)])
    ups = await asyncio.gather(*[wait_msg(ws, is_update(i, w), timeout=10)
                                 for i, ws in enumerate(sockets)])
    arrived = h.now_ms()
    ok = sum(1 for i, u in enumerate(ups)
             if u is not None and points_of(u)[()][w]["count"] == 1)
    h.log(f"{ok} of {MANY} sockets got their update; last by "
          f"{arrived - (w + 1000 + GRACE_MS)} ms after window end + grace")
    chk.check(ok == MANY, f"only {ok} of {MANY} sockets got the update of window {w}")
    await asyncio.gather(*[ws.close() for ws in sockets])
    deadline = time.time() + 10
    while time.time() < deadline:
        m = metrics(node)
        if m.get("cairn_live_clients") == base.get("cairn_live_clients") == 0:
            break
        await asyncio.sleep(0.2)
    chk.check(m.get("cairn_live_clients") == 0 and m.get("cairn_live_subscriptions") == 0,
              f"after closing: clients {m.get('cairn_live_clients')}, "
              f"subscriptions {m.get('cairn_live_subscriptions')}")


PING_MS = 400


def raw_ws(port):
    """A WebSocket handshake on a plain socket; returns the socket."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /v1/live HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                  f"Upgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                 .encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            raise h.TestFailure("handshake: connection closed")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise h.TestFailure(f"handshake refused: {head[:200]!r}")
    return sock


def read_frames(sock, seconds):
    """(opcode, arrival seconds) of every frame the server sends within
    `seconds`, and whether it closed the connection."""
    sock.settimeout(0.1)
    buf, frames, closed = b"", [], False
    t0 = time.time()
    while time.time() - t0 < seconds and not closed:
        try:
            chunk = sock.recv(4096)
        except socket.timeout:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        buf += chunk
        while len(buf) >= 2:
            n = buf[1] & 0x7F
            need = 2 + (2 if n == 126 else 8 if n == 127 else 0)
            if len(buf) < need:
                break
            if n == 126:
                n = struct.unpack(">H", buf[2:4])[0]
            elif n == 127:
                n = struct.unpack(">Q", buf[2:10])[0]
            if len(buf) < need + n:
                break
            frames.append((buf[0] & 0x0F, time.time() - t0))
            buf = buf[need + n:]
    return frames, closed


async def keepalive(args, chk):
    """cairn.http.ws-ping-interval: the node pings a quiet socket, keeps one
    that answers, closes one that does not, and answers a client's ping."""
    node = h.Node(args.bin_dir, args.source_dir, name="live-ping", keep=args.keep,
                  extra_args=[f"--cairn.http.ws-ping-interval={PING_MS}ms"])
    with node:
        ws = await connect(node, ping_interval=None)  # answers pings itself
        pong = await ws.ping(b"cairn")
        await asyncio.wait_for(pong, 3)
        chk.count()
        sock = raw_ws(node.http_port)
        frames, closed = await asyncio.to_thread(read_frames, sock, 8 * PING_MS / 1000)
        sock.close()
        pings = [t for op, t in frames if op == 0x9]
        chk.check(pings and pings[0] <= 3 * PING_MS / 1000,
                  f"a quiet socket is pinged within the interval: frames {frames}")
        chk.check(closed and all(op in (0x8, 0x9) for op, _ in frames),
                  f"one that never answers is closed: closed {closed}, frames {frames}")
        # The answering client outlived the silent one, and still works.
        snap = await request(ws, {"op": "subscribe", "id": "ka",
                                  "query": {"metric": "ka.m", "from": "-10s"}})
        chk.check(snap is not None and snap.get("type") == "snapshot",
                  f"a socket that answers pings stays open for {8 * PING_MS} ms: {snap}")
        await ws.close()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_live")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 2 * MANY + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4 * MANY), hard))
    node = h.Node(args.bin_dir, args.source_dir, name="live", keep=args.keep,
                  extra_args=[f"--cairn.live.grace={GRACE_MS}ms",
                              f"--cairn.live.max-subscriptions={MAX_SUBS}",
                              f"--cairn.http.max-websockets={MAX_WS}",
                              f"--cairn.http.ws-max-message={WS_MAX_MESSAGE}"])
    try:
        node.start()
        node.wait_ready()
        asyncio.run(basics(node, chk))
        ndjson_stream(node, chk)
        asyncio.run(slow_consumer(node, chk))
        asyncio.run(many_sockets(node, chk))
        asyncio.run(keepalive(args, chk))
        with node.client(timeout=10) as c:
            st = c.request({"op": "stats"})
        live = st.get("live", {})
        chk.check(live.get("updates_total", 0) > MANY and "coalesced_total" in live
                  and live.get("subscriptions") == 0,
                  f"stats live section: {live}")
        code, _ = node.terminate(15)
        chk.check(code == 0, f"SIGTERM: exit code {code}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if node.alive():
            node.kill()
        if chk.failures:
            node.dump_log(80)
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
