#!/usr/bin/env python3
"""Malformed input: valid events interleaved with every kind of bad line on
one connection, then a flush.

Checked (docs/protocol.md): exactly one error line per bad line, in order,
with the right 1-based "line" number and a stable code (bad_request for
lines that are not JSON objects, invalid_event for events failing
validation, too_large for lines over cairn.tcp.max-line, unknown_op echoing
the id); no reply for valid events; flush accepted == number of valid events
and a count query agrees; the connection keeps working; a new connection
answers ping. Also: a client that disconnects mid-line and a client that
sends 20 MB of garbage without a newline do not hurt the node.
"""

import json
import os
import random
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

MAX_LINE = 65536


def ev(metric="mal.ok", ts=None, value=None, tags=None, **extra):
    e = {"metric": metric}
    if ts is not None:
        e["ts"] = ts
    if value is not None:
        e["value"] = value
    if tags is not None:
        e["tags"] = tags
    e.update(extra)
    return json.dumps(e, separators=(",", ":")).encode()


def pad_to(line, size):
    """Pads an event line with an unknown field to exactly `size` bytes."""
    assert line.endswith(b"}")
    head = line[:-1] + b',"pad":"'
    fill = size - len(head) - 2
    assert fill >= 0
    out = head + b"p" * fill + b'"}'
    assert len(out) == size
    return out


def build_stream(now):
    """Returns [(bytes line, kind, info)], kind in valid / bad / request.
    For valid: info = (metric, value). For bad: info = (expected code,
    acceptable alternative codes, description). For request: the id."""
    rng = random.Random(7)
    items = []

    def valid(line, metric, value):
        items.append((line, "valid", (metric, value)))

    def bad(line, code, desc, alts=()):
        items.append((line, "bad", (code, tuple(alts), desc)))

    def ok_event():
        v = round(rng.uniform(-100, 100), 3)
        valid(ev(ts=now - rng.randrange(1000, 120_000), value=v,
                 tags={"k": rng.choice("abc")}), "mal.ok", v)

    bad_lines = [
        (b'{"metric":"mal.ok",,"value":1}', "bad_request", "bad JSON", ()),
        (b'{"metric":"mal.ok","ts":', "bad_request", "truncated object", ()),
        (b'[1,2,3]', "bad_request", "a JSON array", ()),
        (b'42', "bad_request", "a number", ()),
        (b'"hello"', "bad_request", "a string", ()),
        (b'null', "bad_request", "null", ()),
        (b'{"metric":5,"value":1}', "invalid_event", "metric is a number", ()),
        (ev(ts=str(now)), "invalid_event", "ts is a string", ()),
        (ev(ts=now - 5000.5), "invalid_event", "ts is a float", ()),
        (b'{"metric":"mal.ok","ts":1.5}', "invalid_event", "ts 1.5", ()),
        (ev(value="x"), "invalid_event", "value is a string", ()),
        (ev(tags=["a", "b"]), "invalid_event", "tags is an array", ()),
        (ev(tags={"k": 5}), "invalid_event", "tag value is a number", ()),
        (b'{"metric":"mal.ok","value":1e400}', "invalid_event", "value 1e400",
         ("bad_request",)),
        (b'{"metric":"mal.ok","ts":99999999999999999999}', "invalid_event",
         "ts 99999999999999999999", ("bad_request",)),
        (b'{"metric":"mal.ok","value":NaN}', "bad_request", "NaN literal", ("invalid_event",)),
        (b'{"metric":"mal.ok","value":Infinity}', "bad_request", "Infinity literal",
         ("invalid_event",)),
        (b'{"metric":"mal.ok","value":-Infinity}', "bad_request", "-Infinity literal",
         ("invalid_event",)),
        (b'[' * 10000, "bad_request", "10000 nested '['", ()),
        (b'{"a":' * 5000, "bad_request", "5000 nested unterminated objects", ()),
        (b'{"metric":"mal.ok","tags":{"k":"ab\xff\xfecd"}}', "bad_request",
         "invalid UTF-8 in a string", ("invalid_event",)),
        (ev(metric=""), "invalid_event", "empty metric", ()),
        (ev(metric="m" * 201), "invalid_event", "201-char metric", ()),
        (ev(metric="bad metric!"), "invalid_event", "metric with bad characters", ()),
        (b'{"value":3}', "invalid_event", "missing metric", ()),
        # Found by the fuzzer (an ASan build crashed in parse_ingest): a
        # request whose event is malformed JSON is a malformed line.
        (b'{"op":"ingest","id":"badev","events":[{"temric"1:"m"}]}', "bad_request",
         "ingest with a malformed event", ()),
        (b'{}', "invalid_event", "empty object", ()),
        (ev(tags={f"k{i}": "v" for i in range(17)}), "invalid_event", "17 tags", ()),
        (ev(tags={"k": "v" * 129}), "invalid_event", "129-byte tag value", ()),
        (ev(tags={"k" * 129: "v"}), "invalid_event", "129-byte tag key", ()),
        (ev(tags={"": "v"}), "invalid_event", "empty tag key", ()),
        (ev(value=1, pad="x" * 100_000), "too_large", "100 KB line (max-line 65536)", ()),
        (ev(ts=1000), "invalid_event", "very old ts (1970)", ()),
        (ev(ts=-5), "invalid_event", "negative ts", ()),
        (ev(ts=now + 86_400_000), "invalid_event", "far-future ts (+1 day)", ()),
        (ev(ts=now + 11 * 60_000), "invalid_event", "ts beyond max-future (+11m)", ()),
        (ev(value=True), "invalid_event", "value is a boolean", ()),
        (ev(metric="m\u00e9tric"), "invalid_event", "metric with a non-ASCII letter", ()),
        (ev(ts=now - 1000, tags={"k": "\u00e9" * 65}), "invalid_event",
         "tag value of 65 two-byte chars (130 bytes)", ()),
        (pad_to(ev(ts=now - 1000, value=1), MAX_LINE + 1), "too_large",
         f"line of max-line + 1 = {MAX_LINE + 1} bytes", ()),
    ]
    requests = [
        (b'{"op":"frobnicate","id":7}', "unknown_op", 7, "unknown op", ()),
        (b'{"op":5,"id":"opnum"}', "bad_request", "opnum", "op is a number", ("unknown_op",)),
        (b'{"op":"ingest","id":"noevents"}', "bad_request", "noevents",
         "ingest without events", ()),
        (b'{"op":"query","id":"noquery"}', "bad_request", "noquery", "query without metric", ()),
    ]
    special_valid = [
        (ev(metric="mal.m200." + "x" * 191, ts=now - 3000, value=2.5), "mal.m200." + "x" * 191, 2.5),
        (ev(metric="mal.chars_A-z.0:9/x", ts=now - 3000, value=-1.25), "mal.chars_A-z.0:9/x", -1.25),
        (ev(ts=now - 4000, value=5, tags={f"k{i:02d}": f"v{i}" for i in range(16)}), "mal.ok", 5),
        (ev(ts=now - 4000, value=6, tags={"k" * 128: "v" * 128}), "mal.ok", 6),
        (ev(ts=now - 4000, value=7, tags={"k": ""}), "mal.ok", 7),
        (ev(ts=now - 4000), "mal.ok", 1.0),                       # value defaults to 1
        (ev(value=8.5), "mal.ok", 8.5),                           # ts defaults to now
        (ev(ts=now - 5000, value=0), "mal.ok", 0.0),
        (ev(metric="mal.big", ts=now - 5000, value=1e300), "mal.big", 1e300),
        (ev(ts=now - 5000, value=-3, unknown_field={"x": [1, 2]}), "mal.ok", -3),
        (ev(ts=now - 6000, value=9) + b"\r", "mal.ok", 9),        # trailing \r ignored
        (b'  ' + ev(ts=now - 6000, value=10) + b' ', "mal.ok", 10),  # surrounding spaces
        (ev(metric="mal.old", ts=now - 2 * 86_400_000, value=11), "mal.old", 11),   # old but within 90d
        (ev(metric="mal.future", ts=now + 5 * 60_000, value=12), "mal.future", 12),    # within max-future
        (b'{"metric":"mal.ok","ts":' + str(now - 7000).encode() + b',"value":1.5e2}', "mal.ok", 150.0),
        (b'{"metric":"mal\\u002eok","ts":' + str(now - 7000).encode() + b',"value":13}',
         "mal.ok", 13),                                           # escaped '.' in the metric
        (ev(ts=now - 7000, value=14, tags={"k": "line\nbreak \"quoted\" \u00e9"}), "mal.ok", 14),
        (ev(ts=now - 7000, value=15, tags={"\u043a\u043b\u044e\u0447": "\u00e9" * 64}),
         "mal.ok", 15),                                           # 128-byte UTF-8 value
        (pad_to(ev(ts=now - 7000, value=16), MAX_LINE), "mal.ok", 16),  # exactly max-line bytes
    ]
    # Interleave: a few valid events between every bad line and request.
    queue = [("bad", b) for b in bad_lines] + [("req", r) for r in requests] + \
            [("special", s) for s in special_valid]
    rng.shuffle(queue)
    for _ in range(5):
        ok_event()
    # Blank lines count as lines (line numbers stay editor line numbers) but
    # get no reply.
    items.append((b"", "blank", None))
    items.append((b"   \t", "blank", None))
    for kind, x in queue:
        if kind == "bad":
            bad(x[0], x[1], x[2], x[3])
        elif kind == "req":
            items.append((x[0], "request", (x[1], x[4], x[3], x[2])))
        else:
            valid(x[0], x[1], x[2])
        for _ in range(rng.randrange(1, 4)):
            ok_event()
    return items


def check_stream(node, chk):
    now = h.now_ms()
    items = build_stream(now)
    n_valid = sum(1 for _, k, _ in items if k == "valid")
    n_bad = sum(1 for _, k, _ in items if k == "bad")
    n_req = sum(1 for _, k, _ in items if k == "request")
    h.log(f"stream: {len(items)} lines: {n_valid} valid events, {n_bad} bad lines, "
          f"{n_req} bad requests")
    with node.client(timeout=30) as c:
        data = b"".join(line + b"\n" for line, _, _ in items)
        data += b'{"op":"flush","id":"final"}\n'
        c.send_raw(data)
        replies = []
        try:
            while True:
                r = c.read_json(timeout=30)
                replies.append(r)
                if r.get("id") == "final":
                    break
        except (TimeoutError, ConnectionError, ValueError) as e:
            chk.check(False, f"reading replies: {e}")
        flush = replies.pop() if replies and replies[-1].get("id") == "final" else None
        expected = [(i + 1, k, info) for i, (_, k, info) in enumerate(items)
                    if k not in ("valid", "blank")]
        chk.check(len(replies) == len(expected),
                  f"{len(replies)} error lines for {len(expected)} bad lines")
        ambiguous = []
        for idx, (line_no, kind, info) in enumerate(expected):
            r = replies[idx] if idx < len(replies) else None
            if kind == "bad":
                code, alts, desc = info
            else:
                code, alts, desc, rid = info
            label = f"line {line_no} ({desc})"
            if r is None:
                chk.check(False, f"{label}: no error line")
                continue
            got_code = (r.get("error") or {}).get("code") if isinstance(r.get("error"), dict) else None
            chk.check(r.get("ok") is False and isinstance((r.get("error") or {}).get("message"), str),
                      f"{label}: not an error line of the documented shape: {str(r)[:200]}")
            if got_code != code and got_code in alts:
                ambiguous.append(f"{desc}: {got_code} (expected {code})")
            else:
                chk.check(got_code == code, f"{label}: code {got_code!r}, expected {code!r} "
                                            f"(reply {str(r)[:200]})")
            if kind == "bad":
                chk.check(r.get("line") == line_no,
                          f"{label}: \"line\" is {r.get('line')!r}, expected {line_no}")
            else:
                chk.check(r.get("id") == rid, f"{label}: id {r.get('id')!r} not echoed "
                                              f"(expected {rid!r})")
                if "line" in r:
                    chk.check(r.get("line") == line_no, f"{label}: line {r.get('line')!r}")
        for a in ambiguous:
            chk.note("ambiguous per doc, accepted: " + a)
        n_invalid_events = sum(1 for _, k, i in expected if k == "bad" and i[0] == "invalid_event")
        if chk.check(flush is not None and flush.get("ok") is True, f"flush reply: {flush}"):
            chk.check(flush.get("accepted") == n_valid,
                      f"flush accepted {flush.get('accepted')!r}, expected {n_valid}")
            rej = flush.get("rejected")
            chk.check(isinstance(rej, int) and n_invalid_events <= rej <= n_bad,
                      f"flush rejected {rej!r}, expected between {n_invalid_events} "
                      f"(invalid events) and {n_bad} (all bad non-request lines)")
            h.log(f"flush: {flush} (bad lines {n_bad}, of which invalid_event "
                  f"{n_invalid_events})")

        # Count queries agree with what was accepted.
        per_metric = {}
        for _, k, info in items:
            if k == "valid":
                per_metric.setdefault(info[0], []).append(info[1])
        for metric, vals in sorted(per_metric.items()):
            frm = "-3d" if metric == "mal.old" else "-15m"
            q = {"op": "query", "metric": metric, "from": frm, "to": h.now_ms() + 600_000,
                 "step": "1h" if metric == "mal.old" else "1m", "aggs": ["count", "sum"]}
            r = c.request(q, timeout=30)
            pts = [p for s in r.get("series", []) for p in s.get("points", [])]
            cnt = sum(p.get("count", 0) for p in pts)
            sm = sum(p.get("sum", 0) for p in pts)
            chk.count(2)
            chk.check(r.get("ok") is True and cnt == len(vals) and
                      abs(sm - sum(vals)) <= 1e-9 * sum(abs(v) for v in vals) + 1e-9,
                      f"count query {metric}: count {cnt} sum {sm}, expected {len(vals)} "
                      f"{sum(vals)} (reply {str(r)[:300]})")

        # The same connection still works.
        r = c.request({"op": "ping", "id": "after"}, timeout=10)
        chk.check(r.get("ok") is True and r.get("id") == "after", f"ping after bad lines: {r}")
        c.send_raw(ev(ts=h.now_ms() - 1000, value=1) + b"\n")
        r = c.request({"op": "flush"}, timeout=10)
        chk.check(r.get("ok") is True and r.get("accepted") == 1 and r.get("rejected") == 0,
                  f"flush after bad lines: expected accepted=1 rejected=0, got {r}")
    with node.client(timeout=10) as c2:
        r = c2.request({"op": "ping"}, timeout=10)
        chk.check(r.get("ok") is True and r.get("status") == "ready", f"new connection ping: {r}")


def count_of(node, metric):
    with node.client(timeout=10) as c:
        r = c.request({"op": "query", "metric": metric, "from": "-15m",
                       "to": h.now_ms() + 60_000, "step": "1m", "aggs": ["count"]})
        return sum(p.get("count", 0) for s in r.get("series", []) for p in s.get("points", []))


def check_disconnect_mid_line(node, chk):
    now = h.now_ms()
    c = node.client(timeout=10)
    c.send_raw(b"".join(ev(metric="mal.mid", ts=now - 2000 - i, value=i) + b"\n"
                        for i in range(10)))
    c.send_raw(b'{"metric":"mal.mid","ts":' + str(now).encode() + b',"val')
    c.close()
    c = node.client(timeout=10)
    c.send_raw(ev(metric="mal.mid", ts=now - 3000, value=1) + b"\n" +
               b'{"metric":"mal.mid","pad":"' + b"y" * 50_000)  # half a big line
    c.close()
    deadline = time.time() + 10
    n = -1
    while time.time() < deadline:
        n = count_of(node, "mal.mid")
        if n == 11:
            break
        time.sleep(0.2)
    chk.check(n == 11, f"events sent before a mid-line disconnect: {n} counted, expected 11")
    chk.check(node.alive(), "node died after a client disconnected mid-line")
    with node.client(timeout=10) as c:
        r = c.request({"op": "ping"})
        chk.check(r.get("ok") is True, f"ping after mid-line disconnect: {r}")


def check_garbage(node, chk):
    rng = random.Random(3)
    block = bytes(rng.randrange(256) for _ in range(1 << 16)).replace(b"\n", b"x")
    size = 20 * 1024 * 1024
    c = node.client(timeout=60)
    t0 = time.time()
    sent_all = True
    try:
        for _ in range(size // len(block)):
            c.send_raw(block)
        c.send_raw(b"\n" + ev(metric="mal.garbage", ts=h.now_ms() - 1000) + b"\n" +
                   b'{"op":"flush","id":"g"}\n')
    except OSError as e:
        sent_all = False
        chk.check(False, f"20 MB garbage without newline: connection broken while sending "
                         f"({e!r}); the doc says the line is skipped and the connection "
                         f"stays open")
    took = time.time() - t0
    h.log(f"sent 20 MB of garbage in {took:.1f}s (all sent: {sent_all})")
    if sent_all:
        try:
            r1 = c.read_json(timeout=30)
            chk.check(h.is_error(r1, "too_large") and r1.get("line") == 1,
                      f"20 MB garbage line: expected too_large for line 1, got {str(r1)[:200]}")
            r2 = c.read_json(timeout=30)
            chk.check(r2.get("ok") is True and r2.get("id") == "g" and r2.get("accepted") == 1,
                      f"flush after garbage: expected accepted=1, got {r2}")
        except (TimeoutError, ConnectionError, ValueError) as e:
            chk.check(False, f"after 20 MB garbage: {e}")
    c.close()
    chk.check(node.alive(), "node died after 20 MB of garbage")
    with node.client(timeout=10) as c:
        r = c.request({"op": "ping"})
        chk.check(r.get("ok") is True, f"ping after garbage: {r}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_malformed")
    with h.Node(args.bin_dir, args.source_dir, name="t1", keep=args.keep,
                extra_args=[f"--cairn.tcp.max-line={MAX_LINE}"]) as node:
        for name, fn in [("malformed stream", check_stream),
                         ("disconnect mid-line", check_disconnect_mid_line),
                         ("20 MB garbage", check_garbage)]:
            h.log(f"-- {name}")
            try:
                fn(node, chk)
            except (h.TestFailure, OSError, TimeoutError, ValueError) as e:
                chk.check(False, f"{name}: {e!r}")
            if not node.alive():
                break
        chk.check(node.alive(), "node is not running at the end")
        if node.alive():
            code, took = node.terminate(10)
            chk.check(code == 0, f"SIGTERM: exit code {code} after {took:.1f}s")
        if chk.failures:
            node.dump_log(80)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
