#!/usr/bin/env python3
"""Influx line protocol against a real node: the TCP port
(cairn.influx.port, raw sockets as `nc` sends) and POST /write (curl), then
everything queried back exactly through the NDJSON query op
(docs/integrations.md).

Checked:
  * TCP: integer, float and boolean fields, escaped tag keys and values,
    comments and blank lines, CRLF; a malformed line, a string field and an
    over-long line are not stored, nothing is written back, the connection
    stays open and the lines after them count; the log names the problem
    (rate-limited), /metrics counts cairn_influx_rejected_total and the
    stats op has an `influx` section (connections, lines too large).
  * HTTP: precision ns, us, ms, s (and n, u) all land on the same
    millisecond; db, bucket, org, rp are accepted; 204 for a clean body; a
    body with malformed lines and a string field answers 400 naming those
    line numbers and codes while its other lines are stored; bad precision
    400, GET 405, a gzip body stored (truncated gzip 400), other encodings
    415, a body over the HTTP limit 413.
  * A body of several 64 KiB chunks keeps the body's line numbers.
  * Query: count, sum, min, max and last per series equal what was sent.
"""

import gzip
import json
import os
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def curl(node, path, body, extra=()):
    """POSTs `body` (bytes) with curl; returns (status, parsed JSON or text)."""
    p = subprocess.run(
        ["curl", "-s", "-o", "-", "-w", "\n%{http_code}", "-X", "POST",
         "--data-binary", "@-", *extra,
         f"http://127.0.0.1:{node.http_port}{path}"],
        input=body, capture_output=True, timeout=60)
    out = p.stdout.decode("utf-8", "replace")
    text, _, status = out.rpartition("\n")
    try:
        parsed = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return int(status or 0), parsed


def query(c, metric, frm, to, group_by=("host",), step="10m"):
    r = c.request({"op": "query", "metric": metric, "from": frm, "to": to,
                   "step": step, "aggs": ["count", "sum", "min", "max", "last"],
                   "group_by": list(group_by)})
    if not r.get("ok"):
        raise h.TestFailure(f"query {metric} failed: {r}")
    out = {}
    for s in r["series"]:
        key = tuple(s["tags"].get(g) for g in group_by)
        pts = s["points"]
        out[key] = {"count": sum(p["count"] for p in pts),
                    "sum": sum(p["sum"] for p in pts),
                    "min": min(p["min"] for p in pts),
                    "max": max(p["max"] for p in pts),
                    "last": pts[-1]["last"]}
    return out


def wait_count(c, metric, frm, to, want, group_by=("host",), timeout=10.0):
    """Polls until `metric` holds `want` events (the TCP port answers
    nothing, so the test waits for the events to appear)."""
    deadline = time.time() + timeout
    got = {}
    while time.time() < deadline:
        got = query(c, metric, frm, to, group_by)
        if sum(v["count"] for v in got.values()) >= want:
            break
        time.sleep(0.1)
    return got


def expect(chk, got, key, count, total, lo, hi, last, what):
    g = got.get(key)
    ok = (g is not None and g["count"] == count and abs(g["sum"] - total) < 1e-9
          and g["min"] == lo and g["max"] == hi and g["last"] == last)
    chk.check(ok, f"{what} {key}: got {g}, want count={count} sum={total} "
                  f"min={lo} max={hi} last={last}")
    chk.count(5)


def tcp_phase(node, chk, base):
    s = str(base * 1_000_000)  # ns, the default
    lines = [
        f"# a comment",
        f"net,host=a,if=eth0 rx=10i,tx=2.5,up=t {base * 1_000_000}",
        f"",
        f"net,host=a,if=eth0 rx=20i,tx=3.5,up=false {(base + 1000) * 1_000_000}\r",
        f"net,host=a broken",                                     # malformed
        f"net,host=b rx=5u,note=\"a string\" {(base + 2000) * 1_000_000}",
        f"net,host=b,if=eth0 rx=1i,rx=2i {(base + 3000) * 1_000_000}",
        "esc,host=a,tag\\ key=v\\,al\\=ue v=7 " + s,
    ]
    payload = ("\n".join(lines) + "\n").encode()
    payload += b"net,host=c rx=" + b"9" * 3_000_000 + b"i\n"      # over max-line
    payload += f"net,host=c rx=30i {(base + 4000) * 1_000_000}\n".encode()
    sock = socket.create_connection(("127.0.0.1", node.influx_port), timeout=10)
    sock.sendall(payload)
    with node.client() as c:
        got = wait_count(c, "net.rx", base - 1, base + 60_000, 6)
        expect(chk, got, ("a",), 2, 30, 10, 20, 20, "tcp net.rx")
        # rx=5u stored though its line's string field is not; rx=1i,rx=2i
        # is one line with a repeated field: both values count.
        expect(chk, got, ("b",), 3, 8, 1, 5, 2, "tcp net.rx")
        expect(chk, got, ("c",), 1, 30, 30, 30, 30, "tcp net.rx")
        chk.check(("c",) in got and got[("c",)]["count"] == 1,
                  "the line after an over-long line is stored")
        tx = query(c, "net.tx", base - 1, base + 60_000)
        expect(chk, tx, ("a",), 2, 6.0, 2.5, 3.5, 3.5, "tcp net.tx")
        up = query(c, "net.up", base - 1, base + 60_000)
        expect(chk, up, ("a",), 2, 1, 0, 1, 0, "tcp net.up (booleans)")
        note = query(c, "net.note", base - 1, base + 60_000)
        chk.check(note == {}, f"string field not stored: {note}")
        esc = query(c, "esc.v", base - 1, base + 60_000,
                    group_by=("tag key",))
        expect(chk, esc, ("v,al=ue",), 1, 7, 7, 7, 7, "escaped tag")
    # Nothing was written back, and the connection still takes lines.
    sock.settimeout(0.3)
    try:
        data = sock.recv(100)
        chk.check(False, f"the influx port wrote back {data!r}")
    except socket.timeout:
        chk.check(True, "no reply")
    sock.sendall(f"net,host=d rx=1i {(base + 5000) * 1_000_000}\n".encode())
    with node.client() as c:
        got = wait_count(c, "net.rx", base - 1, base + 60_000, 7)
        expect(chk, got, ("d",), 1, 1, 1, 1, 1, "same connection after errors")
    sock.close()
    log = node.log_text()
    chk.check(re.search(r"influx: connection \d+ \(127\.0\.0\.1:\d+\) line 5: "
                        r"bad_request", log) is not None,
              "the log names the malformed line 5")
    chk.check("cairn.influx.port" in log and "exceeds" in log,
              "the log names the over-long line")
    with node.client() as c:
        st = c.request({"op": "stats"})
    lp = st.get("influx", {})
    chk.check(lp.get("lines_too_large") == 1 and lp.get("accepted") == 1
              and lp.get("bytes_read", 0) > 3_000_000,
              f"stats influx section: {lp}")
    p = subprocess.run(["curl", "-s", f"http://127.0.0.1:{node.http_port}/metrics"],
                       capture_output=True, text=True, timeout=30)
    m = re.search(r"^cairn_influx_rejected_total (\d+)", p.stdout, re.M)
    # line 5 (malformed), the string field of line 6
    chk.check(m is not None and int(m.group(1)) == 2,
              f"cairn_influx_rejected_total: {m.group(0) if m else None}")


def http_phase(node, chk, base):
    t = base + 1234  # ms
    variants = [("ns", f"{t}000000"), ("n", f"{t}000000"), ("us", f"{t}000"),
                ("u", f"{t}000"), ("ms", f"{t}"), ("s", f"{t // 1000}"),
                (None, f"{t}000000")]
    for i, (prec, ts) in enumerate(variants):
        q = "?db=mydb&rp=autogen&bucket=b&org=o"
        if prec:
            q += f"&precision={prec}"
        status, body = curl(node, "/write" + q,
                            f"prec,host=p{i} v={i}.5 {ts}\n".encode())
        chk.check(status == 204 and body is None,
                  f"precision {prec}: {status} {body}")
    with node.client() as c:
        got = query(c, "prec.v", base - 1, base + 60_000, step="1s")
        r = c.request({"op": "query", "metric": "prec.v", "from": base,
                       "to": base + 60_000, "step": "1s", "aggs": ["count"],
                       "group_by": ["host"]})
        ts_seen = sorted({p["t"] for s in r.get("series", []) for p in s["points"]})
        chk.check(ts_seen == [base + 1000], f"every precision in one second: {ts_seen}")
        for i in range(len(variants)):
            expect(chk, got, (f"p{i}",), 1, i + 0.5, i + 0.5, i + 0.5, i + 0.5,
                   f"precision {variants[i][0]}")
    # Malformed lines: 400 naming them; the other lines count.
    body = "\n".join([
        f"web,host=h1 latency=10,code=200i {base}",
        f"web,host=h1 latency=",                         # 2: malformed
        f"web,host=h1 latency=20,path=\"/x\" {base + 1}",  # 3: string field
        f"",
        f"web,host=h1 latency=30 {base + 2}",
        f"web host=h1",                                  # 6: no field value
        f"web,host=h1 latency=40 {base + 3}",
    ]).encode()
    status, reply = curl(node, "/write?precision=ms", body)
    chk.check(status == 400, f"malformed lines: status {status}")
    lines = reply.get("lines", []) if isinstance(reply, dict) else []
    chk.check([(x.get("line"), x.get("code")) for x in lines]
              == [(2, "bad_request"), (3, "invalid_event"), (6, "bad_request")],
              f"400 names lines 2, 3, 6 with their codes: {reply}")
    chk.check(isinstance(reply, dict) and reply.get("accepted") == 5
              and reply.get("rejected") == 3, f"accepted/rejected: {reply}")
    chk.check(all(x.get("message") for x in lines), "every line has a message")
    with node.client() as c:
        got = query(c, "web.latency", base - 1, base + 60_000)
        expect(chk, got, ("h1",), 4, 100, 10, 40, 40, "http web.latency")
        got = query(c, "web.code", base - 1, base + 60_000)
        expect(chk, got, ("h1",), 1, 200, 200, 200, 200, "http web.code")
    # A body of several chunks (> 64 KiB): line numbers stay those of the
    # body, every good line counts.
    big = [f"big,host=h{i % 10} v={i}i {base + i % 50_000}" for i in range(20_000)]
    bad = {7: "big,host=h1 v=", 15_001: "big,host=h1", 19_999: "big v=\"s\""}
    for n, text in bad.items():
        big[n - 1] = text
    status, reply = curl(node, "/write?precision=ms", ("\n".join(big) + "\n").encode())
    got_lines = [x.get("line") for x in reply.get("lines", [])] if isinstance(reply, dict) else []
    chk.check(status == 400 and got_lines == sorted(bad),
              f"multi-chunk body names lines {sorted(bad)}: {status} {got_lines}")
    want_sum = sum(i for i in range(20_000) if i + 1 not in bad)
    with node.client() as c:
        got = query(c, "big.v", base - 1, base + 60_000, group_by=())
        g = got.get((), {})
        chk.check(g.get("count") == 20_000 - 3 and g.get("sum") == want_sum,
                  f"multi-chunk body stored: {g}, want count {20_000 - 3} sum {want_sum}")
        chk.count(2)
    # InfluxDB 2.x's path, with its org/bucket parameters and token header.
    status, reply = curl(node, "/api/v2/write?org=o&bucket=b&precision=ms",
                         f"v2,host=h1 v=3 {base + 5}\n".encode(),
                         ["-H", "Authorization: Token abc"])
    chk.check(status == 204, f"/api/v2/write: {status} {reply}")
    with node.client() as c:
        got = query(c, "v2.v", base - 1, base + 60_000)
        expect(chk, got, ("h1",), 1, 3, 3, 3, 3, "/api/v2/write")
    # Refusals.
    status, reply = curl(node, "/write?precision=h", b"x v=1\n")
    chk.check(status == 400 and reply["error"]["code"] == "bad_request"
              and "precision" in reply["error"]["message"],
              f"precision=h: {status} {reply}")
    p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                        f"http://127.0.0.1:{node.http_port}/write"],
                       capture_output=True, text=True, timeout=30)
    chk.check(p.stdout == "405", f"GET /write: {p.stdout}")
    gz = gzip.compress(f"gz,host=h1 v=5 {base + 6}\ngz,host=h1 v=6 {base + 7}\n".encode())
    status, reply = curl(node, "/write?precision=ms", gz, ["-H", "Content-Encoding: gzip"])
    chk.check(status == 204, f"gzip body: {status} {reply}")
    with node.client() as c:
        got = query(c, "gz.v", base - 1, base + 60_000)
        expect(chk, got, ("h1",), 2, 11, 5, 6, 6, "gzip body")
    status, reply = curl(node, "/write", gz[:-8], ["-H", "Content-Encoding: gzip"])
    chk.check(status == 400 and reply["error"]["code"] == "bad_request",
              f"truncated gzip body: {status} {reply}")
    status, reply = curl(node, "/write", b"x v=1\n", ["-H", "Content-Encoding: br"])
    chk.check(status == 415, f"br body: {status} {reply}")
    status, _ = curl(node, "/write", b"big v=1\n" * (9 << 17))  # 9 MiB
    chk.check(status == 413, f"9 MiB body: {status}")
    status, reply = curl(node, "/write", b"")
    chk.check(status == 204, f"empty body: {status} {reply}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_influx")
    influx_port = h.free_port()
    node = h.Node(args.bin_dir, args.source_dir, name="influx", keep=args.keep,
                  extra_args=[f"--cairn.influx.port={influx_port}"])
    node.influx_port = influx_port
    try:
        with node:
            base = (h.now_ms() - 120_000) // 60_000 * 60_000
            tcp_phase(node, chk, base)
            http_phase(node, chk, base)
            node.stop()
    except h.TestFailure as e:
        chk.check(False, str(e))
        node.dump_log()
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
