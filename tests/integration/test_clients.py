#!/usr/bin/env python3
"""The client binaries against a real node.

cairn-cli: ping, ingest FILE / stdin (text and --json summary, rejected
lines -> exit 1), query (table and --json), topk (table and --json), series,
metrics, error exits (bad request -> 1, no server -> 2, usage -> 64).
cairn-bench: short runs (--duration 2) fire-and-forget, ack mode and query
mode (--queries 200) exit 0, report events/s and latency percentiles in
their --json output, and accepted == sent; the node's stats agree. The
realistic shape (--ts-spread 60s --value-spread 5, on a node of its own)
puts events over the whole last minute and values over five decades.
"""

import json
import os
import re
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

PATH_COUNTS = {"/a": 1500, "/b": 1000, "/c": 500}
# Events cairn-cli gets accepted: PATH_COUNTS plus 2 valid lines of bad.ndjson.
CLI_ACCEPTED = sum(PATH_COUNTS.values()) + 2


def cli(args, node, *cmd, input_bytes=None, timeout=60, port=None):
    binary = os.path.join(args.bin_dir, "cairn-cli")
    full = [binary, "--host", "127.0.0.1", "--port", str(port or node.tcp_port)] + list(cmd)
    r = h.run(full, timeout=timeout, input_bytes=input_bytes)
    out = r.stdout.decode("utf-8", "replace")
    err = r.stderr.decode("utf-8", "replace")
    if args.verbose:
        h.log(f"$ {' '.join(full)}\n-> {r.returncode}\n{out}{err}")
    return r.returncode, out, err


def make_events(w):
    """Events with distinct ts inside the aligned minute [w, w+60s)."""
    events = []
    i = 0
    for path, n in PATH_COUNTS.items():
        for j in range(n):
            events.append({"metric": "cli.req", "ts": w + (i * 17) % 60_000 + 0, "value": j % 10,
                           "tags": {"path": path, "host": f"h{j % 2}"}})
            i += 1
    return events


def check_cli(args, node, chk):
    # ping
    code, out, err = cli(args, node, "ping")
    chk.check(code == 0 and "t1" in out and "ready" in out,
              f"cli ping: exit {code}, stdout {out!r}, stderr {err!r}")

    now = h.now_ms()
    w = (now - 70_000) // 60_000 * 60_000
    events = make_events(w)
    tmp = tempfile.mkdtemp(prefix="cairn-cli-")
    good = os.path.join(tmp, "events.ndjson")
    with open(good, "w") as f:
        for e in events[:2000]:
            f.write(json.dumps(e) + "\n")
    # ingest FILE (text output)
    code, out, err = cli(args, node, "ingest", good)
    chk.check(code == 0 and re.search(r"\baccepted 2000\b", out) and
              re.search(r"\brejected 0\b", out),
              f"cli ingest FILE: exit {code}, stdout {out!r}, stderr {err[:300]!r}")
    # ingest - (stdin), --json summary
    data = "".join(json.dumps(e) + "\n" for e in events[2000:]).encode()
    code, out, err = cli(args, node, "--json", "ingest", "-", input_bytes=data)
    try:
        s = json.loads(out.strip().splitlines()[-1])
        chk.check(code == 0 and s.get("accepted") == len(events) - 2000 and s.get("rejected") == 0,
                  f"cli --json ingest -: exit {code}, summary {s}")
    except (ValueError, IndexError):
        chk.check(False, f"cli --json ingest -: output not JSON: {out!r} {err[:300]!r}")
    # ingest with rejected lines: exit 1, counts reported
    bad = os.path.join(tmp, "bad.ndjson")
    with open(bad, "w") as f:
        f.write(json.dumps({"metric": "cli.other", "ts": now - 1000, "value": 1}) + "\n")
        f.write('{"metric":"cli.other","value":"x"}\n')
        f.write("not json\n")
        f.write(json.dumps({"metric": "cli.other", "ts": now - 2000, "value": 2}) + "\n")
    code, out, err = cli(args, node, "--json", "ingest", bad)
    try:
        s = json.loads(out.strip().splitlines()[-1])
        chk.check(code == 1 and s.get("accepted") == 2 and s.get("rejected") in (1, 2) and
                  len(s.get("errors", [])) == 2,
                  f"cli ingest with 2 bad lines: exit {code} (expected 1), summary {s}")
        lines = sorted(e.get("line") for e in s.get("errors", []))
        chk.check(lines == [2, 3], f"cli ingest: error lines {lines}, expected [2, 3]")
    except (ValueError, IndexError):
        chk.check(False, f"cli --json ingest bad file: output not JSON: {out!r} {err[:300]!r}")

    # query, table
    q = {"metric": "cli.req", "from": w, "to": w + 60_000, "step": "60s",
         "aggs": ["count", "sum", "max"], "group_by": ["path"]}
    code, out, err = cli(args, node, "query", json.dumps(q))
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(w // 1000))
    ok = code == 0
    for path, n in PATH_COUNTS.items():
        sums = sum(j % 10 for j in range(n))
        block = out.split(f"path={path}", 1)[1] if f"path={path}" in out else ""
        row = next((ln for ln in block.splitlines() if iso in ln), "")
        ok = ok and bool(re.search(rf"\b{n}\b", row)) and bool(re.search(rf"\b{sums}\b", row)) \
            and bool(re.search(r"\b9\b", row))
    # The planner serves a 1-minute step from the 1 m tier (docs/protocol.md).
    chk.check(ok and "tier 1m" in out.splitlines()[0] if out else False,
              f"cli query (table): exit {code}; expected one series per path with a row at "
              f"{iso} holding count and sum; stdout:\n{out}\nstderr: {err}")
    # query, --json: the raw reply, equal to asking directly
    code, out, err = cli(args, node, "--json", "query", json.dumps(q))
    with node.client() as c:
        direct = c.request(dict(op="query", **q))
    try:
        reply = json.loads(out.strip())
        chk.check(code == 0 and reply.get("series") == direct.get("series") and
                  len(reply.get("series", [])) == 3,
                  f"cli --json query: exit {code}, {out[:300]!r} vs direct {str(direct)[:300]}")
        counts = {s["tags"]["path"]: s["points"][0]["count"] for s in reply.get("series", [])}
        chk.check(counts == PATH_COUNTS, f"cli --json query counts {counts} != {PATH_COUNTS}")
    except (ValueError, KeyError, IndexError) as e:
        chk.check(False, f"cli --json query: bad output ({e!r}): {out[:300]!r} {err[:300]!r}")

    # topk, table and --json
    t = {"metric": "cli.req", "by": "path", "k": 2, "agg": "count", "from": w, "to": w + 60_000}
    code, out, err = cli(args, node, "topk", json.dumps(t))
    lines = out.splitlines()
    ia = next((i for i, ln in enumerate(lines) if re.search(r"/a\s+1500\b", ln)), None)
    ib = next((i for i, ln in enumerate(lines) if re.search(r"/b\s+1000\b", ln)), None)
    chk.check(code == 0 and ia is not None and ib is not None and ia < ib and "/c" not in out,
              f"cli topk (table): exit {code}; expected /a 1500 then /b 1000, no /c:\n{out}{err}")
    code, out, err = cli(args, node, "--json", "topk", json.dumps(t))
    try:
        top = json.loads(out.strip()).get("top")
        chk.check(code == 0 and top == [{"tag": "/a", "value": 1500}, {"tag": "/b", "value": 1000}],
                  f"cli --json topk: {top}")
    except ValueError:
        chk.check(False, f"cli --json topk: not JSON: {out!r}")

    # series, metrics
    code, out, err = cli(args, node, "series", "cli.req")
    chk.check(code == 0 and all(p in out for p in PATH_COUNTS) and
              re.search(r"\b6 series\b", out),
              f"cli series cli.req: exit {code}, expected 6 series listed:\n{out}{err}")
    code, out, err = cli(args, node, "metrics")
    chk.check(code == 0 and re.search(r"cli\.req\s+6\b", out) and re.search(r"cli\.other\s+1\b", out),
              f"cli metrics: exit {code}, expected cli.req 6 and cli.other 1:\n{out}{err}")

    # errors
    bq = {"metric": "cli.req", "step": "1500ms", "from": "-5m"}
    code, out, err = cli(args, node, "query", json.dumps(bq))
    chk.check(code == 1 and "bad_request" in err, f"cli bad query: exit {code} (expected 1), "
                                                  f"stderr {err!r}")
    dead = h.free_port()
    code, out, err = cli(args, node, "--timeout", "2", "ping", port=dead)
    chk.check(code == 2, f"cli ping to a closed port: exit {code} (expected 2), stderr {err!r}")
    code, out, err = cli(args, node, "no-such-command")
    chk.check(code == 64, f"cli unknown command: exit {code} (expected 64)")
    return len(events) + 2


def bench(args, node, *extra, timeout=120):
    binary = os.path.join(args.bin_dir, "cairn-bench")
    full = [binary, "--host", "127.0.0.1", "--port", str(node.tcp_port), "--json"] + list(extra)
    r = h.run(full, timeout=timeout)
    out = r.stdout.decode("utf-8", "replace")
    err = r.stderr.decode("utf-8", "replace")
    h.log(f"$ {' '.join(os.path.basename(x) if i == 0 else x for i, x in enumerate(full))}"
          f" -> exit {r.returncode}")
    doc = None
    for line in reversed(out.strip().splitlines()):
        try:
            doc = json.loads(line)
            break
        except ValueError:
            continue
    if doc is None:
        try:
            doc = json.loads(out)
        except ValueError:
            pass
    return r.returncode, doc, out, err


def percentiles_ok(chk, label, lat, names):
    """lat: {"count":N,"p50":..,...,"max":..}; names in increasing order."""
    if not chk.check(isinstance(lat, dict) and all(
            isinstance(lat.get(p), (int, float)) for p in names + ["max", "count"]),
            f"{label}: latency percentiles {names} missing: {lat}"):
        return
    chk.check(lat["count"] > 0, f"{label}: latency histogram is empty: {lat}")
    vals = [lat[p] for p in names] + [lat["max"]]
    chk.check(all(0 <= vals[i] <= vals[i + 1] for i in range(len(vals) - 1)),
              f"{label}: percentiles not increasing: {lat}")


def check_bench(args, node, chk):
    """Returns the number of events the bench runs got accepted."""
    total_acked = 0
    for mode, extra in [("fire-and-forget", ["--duration", "2", "--mode", "ff",
                                             "--flush-every", "20000"]),
                        ("ack", ["--duration", "2", "--mode", "ack"])]:
        code, doc, out, err = bench(args, node, *extra)
        label = f"bench {mode}"
        if not chk.check(code == 0 and isinstance(doc, dict),
                         f"{label}: exit {code}, --json output not parsable:\n{out[-1500:]}\n"
                         f"{err[-1500:]}"):
            continue
        h.log(f"{label}: {json.dumps(doc)[:700]}")
        sent, accepted = doc.get("events_sent"), doc.get("accepted")
        chk.check(doc.get("ok") is True and doc.get("mismatch") is False,
                  f"{label}: ok {doc.get('ok')!r} mismatch {doc.get('mismatch')!r} "
                  f"failures {doc.get('failures')} errors {doc.get('errors')}")
        chk.check(isinstance(sent, int) and sent > 0, f"{label}: events_sent {sent!r}")
        chk.check(accepted == sent and doc.get("rejected") == 0 and
                  doc.get("rejected_lines") == 0 and doc.get("error_replies") == 0,
                  f"{label}: accepted {accepted!r} != sent {sent!r} or rejections: "
                  f"rejected {doc.get('rejected')!r} lines {doc.get('rejected_lines')!r} "
                  f"error replies {doc.get('error_replies')!r}")
        eps = doc.get("events_per_second")
        chk.check(isinstance(eps, (int, float)) and eps > 0, f"{label}: events_per_second {eps!r}")
        percentiles_ok(chk, label, doc.get("ack_latency_ms"), ["p50", "p99", "p99.9"])
        total_acked += accepted if isinstance(accepted, int) else 0

    code, doc, out, err = bench(args, node, "--query-mode", "--queries", "200")
    label = "bench query mode"
    if chk.check(code == 0 and isinstance(doc, dict),
                 f"{label}: exit {code}, --json output not parsable:\n{out[-1500:]}\n"
                 f"{err[-1500:]}"):
        h.log(f"{label}: {json.dumps(doc)[:700]}")
        chk.check(doc.get("ok") is True, f"{label}: ok {doc.get('ok')!r}: {doc}")
        chk.check(doc.get("queries") == 200, f"{label}: queries {doc.get('queries')!r}, "
                                             f"expected 200")
        chk.check(doc.get("query_errors") == 0, f"{label}: query_errors "
                                                f"{doc.get('query_errors')!r}")
        chk.check(doc.get("empty_replies") == 0,
                  f"{label}: {doc.get('empty_replies')!r} empty replies although the "
                  f"ingest runs just wrote the default query's data")
        qps = doc.get("queries_per_second")
        chk.check(isinstance(qps, (int, float)) and qps > 0, f"{label}: queries_per_second {qps!r}")
        lat = doc.get("query_latency_us")
        percentiles_ok(chk, label, lat, ["p50", "p90", "p99", "p99.9"])
        if isinstance(lat, dict):
            chk.check(lat.get("count") == 200, f"{label}: latency count {lat.get('count')!r}")
    return total_acked


def check_bench_shape(args, chk):
    """--ts-spread 60s --value-spread 5 on a node of its own: the events'
    times cover the last minute and their values five decades."""
    with h.Node(args.bin_dir, args.source_dir, name="shape", keep=args.keep) as node:
        code, doc, out, err = bench(args, node, "--mode", "ack", "--events", "30000",
                                    "--series", "10", "--connections", "1",
                                    "--ts-spread", "60s", "--value-spread", "5")
        chk.require(code == 0 and isinstance(doc, dict) and doc.get("accepted") == 30000,
                    f"bench with a spread: exit {code} {out[-800:]} {err[-800:]}")
        with node.client() as c:
            r = c.request({"op": "query", "metric": "bench.m0", "range": "3m",
                           "step": "1s", "aggs": ["count", "min", "max"]})
        pts = [p for s in r.get("series", []) for p in s.get("points", [])
               if p.get("count", 0) > 0]
        span = (max(p["t"] for p in pts) - min(p["t"] for p in pts)) if pts else 0
        chk.check(len(pts) >= 50 and 55_000 <= span <= 61_000,
                  f"event times spread over the last minute: {len(pts)} seconds "
                  f"with events, spanning {span} ms")
        lo = min((p["min"] for p in pts), default=0)
        hi = max((p["max"] for p in pts), default=0)
        chk.check(1 <= lo < 10 and 10_000 < hi < 100_000,
                  f"values over five decades: min {lo}, max {hi}")
        code, _, _, err = bench(args, node, "--ts-spread", "2h")
        chk.check(code == 64 and "--ts-spread" in err,
                  f"a spread past an hour is a usage error: exit {code} {err[-300:]}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_clients")
    with h.Node(args.bin_dir, args.source_dir, name="t1", keep=args.keep) as node:
        h.log("-- cairn-cli")
        try:
            check_cli(args, node, chk)
        except Exception as e:
            chk.check(False, f"cairn-cli: {e!r}")
        h.log("-- cairn-bench")
        try:
            acked = check_bench(args, node, chk)
            with node.client() as c:
                st = c.request({"op": "stats"})
            ev = st.get("events") or {}
            chk.check(ev.get("accepted") == CLI_ACCEPTED + acked,
                      f"stats events.accepted {ev.get('accepted')!r}, expected "
                      f"{CLI_ACCEPTED} (cli) + {acked} (bench) = {CLI_ACCEPTED + acked}")
        except Exception as e:
            chk.check(False, f"cairn-bench: {e!r}")
        try:
            check_bench_shape(args, chk)
        except h.TestFailure as e:
            chk.check(False, str(e))
        chk.check(node.alive(), "node died")
        if node.alive():
            code, took = node.terminate(10)
            chk.check(code == 0, f"SIGTERM: exit {code}")
        if chk.failures:
            node.dump_log(60)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
