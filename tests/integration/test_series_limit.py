#!/usr/bin/env python3
"""The cardinality guard (cairn.limits.max-series, docs/protocol.md
too_many_series) against a real node, in memory and with the journal.

Checked: with max-series = 6, six series are created; a fire-and-forget
event of a seventh gets one error line with code too_many_series and the
right line number, events of the six existing series still get no error
and are applied; an ingest request mixing old and new series answers
accepted/rejected with one errors entry per new-series event at its index;
a count query sees exactly the accepted events; the log names the limit
exactly once (once a minute); after a restart (journal on) the recovered
series still count against the limit.
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

LIMIT = 6


def ev(series, ts, value=1.0):
    return json.dumps({"metric": "lim.m", "ts": ts, "value": value,
                       "tags": {"s": str(series)}}, separators=(",", ":")).encode()


def count_all(c, now):
    r = c.request({"op": "query", "metric": "lim.m", "from": now - 120_000,
                   "to": now + 1000, "step": "10m", "aggs": ["count"],
                   "group_by": ["s"]})
    if not r.get("ok"):
        raise h.TestFailure(f"query failed: {r}")
    out = {}
    for s in r["series"]:
        out[s["tags"]["s"]] = sum(p["count"] for p in s["points"])
    return out


def check(node, chk, restarted=False):
    now = h.now_ms()
    with node.client() as c:
        if not restarted:
            # Six series: all accepted (no error lines), then flush.
            c.send_raw(b"\n".join(ev(i, now - 1000) for i in range(LIMIT)) + b"\n")
            r = c.request({"op": "flush"})
            chk.check(r.get("ok") and r.get("accepted") == LIMIT, f"flush 1: {r}")
        # A seventh series among events of existing ones (lines 1..5).
        lines = [ev(0, now - 900), ev(1, now - 900), ev(99, now - 900),
                 ev(2, now - 900), ev(98, now - 900)]
        c.send_raw(b"\n".join(lines) + b"\n")
        errors = [c.read_json(timeout=10) for _ in range(2)]
        base = 0 if restarted else LIMIT + 1  # the six events and a flush
        for e, line_no in zip(errors, (base + 3, base + 5)):
            chk.check(e.get("ok") is False
                      and e.get("error", {}).get("code") == "too_many_series"
                      and e.get("line") == line_no,
                      f"ff error for a new series at line {line_no}: {e}")
        r = c.request({"op": "flush"})
        chk.check(r.get("ok") and r.get("accepted") == 3 and r.get("rejected") == 2,
                  f"flush 2: {r}")
        # The ingest request: per-event errors at the right indexes.
        events = [json.loads(ev(3, now - 800)), json.loads(ev(77, now - 800)),
                  {"metric": "lim.m", "value": "nope"},  # invalid value
                  json.loads(ev(4, now - 800)), json.loads(ev(78, now - 800))]
        r = c.request({"op": "ingest", "events": events})
        idx = {e["index"]: e["code"] for e in r.get("errors", [])}
        chk.check(r.get("ok") is True and r.get("accepted") == 2
                  and r.get("rejected") == 3, f"ingest reply: {r}")
        chk.check(idx == {1: "too_many_series", 2: "invalid_event",
                          4: "too_many_series"}, f"ingest errors: {idx}")
        counts = count_all(c, now)
        n = 3 if restarted else 2
        expected = {"0": n, "1": n, "2": n, "3": n, "4": n, "5": 1}
        chk.check(counts == expected, f"counts {counts} != {expected}")
        st = c.request({"op": "stats"})
        chk.check(st.get("series") == LIMIT, f"stats series: {st.get('series')}")
    chk.check(node.log_text().count("series limit reached") == 1,
              "the guard's log line appears exactly once")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_series_limit")
    extra = [f"--cairn.limits.max-series={LIMIT}", "--cairn.storage.sync=never"]
    node = h.Node(args.bin_dir, args.source_dir, name="lim", keep=args.keep,
                  extra_args=extra)
    try:
        node.start()
        node.wait_ready()
        h.log("-- guard on a fresh node")
        check(node, chk)
        h.log("-- after a restart, recovered series count")
        chk.check(node.terminate(20)[0] == 0, "SIGTERM exit code")
        node._log_file.close()
        node._log_file = None
        os.remove(node.log_path)
        node.start()
        node.wait_ready()
        check(node, chk, restarted=True)
        if chk.failures:
            node.dump_log(60)
    finally:
        node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
