#!/usr/bin/env python3
"""The ingest cost budget (runtime/ingest_costs.hpp, docs/architecture.md
"Ingest cost budget") as `stats` and /metrics show it, on a real node.

Checked, durable node: after fire-and-forget NDJSON (with two bad lines)
and one `ingest` request, `stats.ingest_stages` lists the seven stages in
path order; read counts every line the gateway cut, parse every event line
(bad ones too) and every element of the ingest request, split/route/encode/write/apply exactly the accepted events;
read, parse, apply and write have spent CPU, ns_per_event is cpu / events;
/metrics carries the same totals as counters. In-memory node: nothing is
encoded or written, the other stages count as before. A second round adds
exactly its events (the counters are totals since start).
"""

import json
import os
import sys
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

STAGES = ["read", "parse", "split", "route", "encode", "write", "apply"]
EVENTS = 3000
BAD = 2


def scrape(node):
    with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics",
                                timeout=10) as r:
        return r.read().decode()


def send_round(c, now, round_no):
    lines = []
    for i in range(EVENTS):
        lines.append(json.dumps({"metric": "cost.m", "ts": now - (i % 60) * 1000,
                                 "value": i * 0.5, "tags": {"s": str(i % 50)}},
                                separators=(",", ":")))
        if i in (10, 2000):
            lines.append('{"metric":"cost.m","value":"not a number"}')
    c.send_raw(("\n".join(lines) + "\n").encode())
    errors = [c.read_json() for _ in range(BAD)]
    if any(e.get("error", {}).get("code") != "invalid_event" for e in errors):
        raise h.TestFailure(f"round {round_no}: error lines {errors}")
    r = c.request({"op": "flush"})
    if not (r.get("ok") and r.get("accepted") == EVENTS and r.get("rejected") == BAD):
        raise h.TestFailure(f"round {round_no}: flush {r}")
    r = c.request({"op": "ingest", "events": [
        {"metric": "cost.m", "ts": now, "value": 1.0, "tags": {"s": "x"}}
        for _ in range(100)]})
    if not (r.get("ok") and r.get("accepted") == 100):
        raise h.TestFailure(f"round {round_no}: ingest {r}")


def stages_of(c):
    st = c.request({"op": "stats"})
    got = st.get("ingest_stages")
    if not isinstance(got, list):
        raise h.TestFailure(f"stats has no ingest_stages: {sorted(st)}")
    return {s["stage"]: s for s in got}, [s["stage"] for s in got]


def check(node, chk, durable):
    now = h.now_ms()
    accepted = EVENTS + 100
    with node.client() as c:
        send_round(c, now, 1)
        stages, order = stages_of(c)
        chk.check(order == STAGES, f"stage order {order}")
        # read: every line of the connection so far (events, bad lines, the
        # flush, ingest and stats requests: lines cut by the gateway).
        chk.check(stages["read"]["events"] >= EVENTS + BAD + 3,
                  f"read lines {stages['read']['events']}")
        chk.check(stages["parse"]["events"] == EVENTS + BAD + 100,
                  f"parse events {stages['parse']['events']}")
        want = {"split": accepted, "route": accepted, "apply": accepted,
                "encode": accepted if durable else 0,
                "write": accepted if durable else 0}
        for name, n in want.items():
            chk.check(stages[name]["events"] == n,
                      f"{name} events {stages[name]['events']}, want {n}")
        busy = ["read", "parse", "apply"] + (["write", "encode"] if durable else [])
        for name in busy:
            chk.check(stages[name]["cpu_ms"] > 0, f"{name} spent no CPU: {stages[name]}")
        for name, s in stages.items():
            if s["events"]:
                chk.check(abs(s["ns_per_event"] - s["cpu_ms"] * 1e6 / s["events"]) < 1e-6
                          * max(1.0, s["ns_per_event"]),
                          f"{name}: ns_per_event {s['ns_per_event']} != cpu / events")
        if not durable:
            chk.check(stages["encode"]["cpu_ms"] == 0 and stages["write"]["cpu_ms"] == 0,
                      f"in memory: encode {stages['encode']}, write {stages['write']}")
        # /metrics: the same totals (the text is scraped after stats; the
        # stages past read did not move in between).
        text = scrape(node)
        for name in STAGES[1:]:
            series = f'cairn_ingest_stage_events_total{{stage="{name}"}}'
            line = next((l for l in text.splitlines() if l.startswith(series + " ")), None)
            chk.check(line is not None and float(line.split()[1]) == stages[name]["events"],
                      f"/metrics {series}: {line}")
            series = f'cairn_ingest_stage_seconds_total{{stage="{name}"}}'
            line = next((l for l in text.splitlines() if l.startswith(series + " ")), None)
            chk.check(line is not None
                      and abs(float(line.split()[1]) - stages[name]["cpu_ms"] / 1e3) < 1e-6,
                      f"/metrics {series}: {line} vs {stages[name]['cpu_ms']} ms")
        send_round(c, now, 2)
        again, _ = stages_of(c)
        for name in ["split", "route", "apply"]:
            chk.check(again[name]["events"] == 2 * accepted,
                      f"round 2: {name} events {again[name]['events']}")
        chk.check(again["parse"]["events"] == 2 * (EVENTS + BAD + 100),
                  f"round 2: parse events {again['parse']['events']}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_ingest_costs")
    for durable in (True, False):
        extra = ["--cairn.storage.sync=never"] if durable else ["--cairn.storage.enabled=false"]
        node = h.Node(args.bin_dir, args.source_dir,
                      name="costs" if durable else "costs-mem", keep=args.keep,
                      extra_args=extra)
        try:
            node.start()
            node.wait_ready()
            h.log(f"-- {'durable' if durable else 'in memory'}")
            check(node, chk, durable)
            if chk.failures:
                node.dump_log(60)
        finally:
            node.cleanup()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
