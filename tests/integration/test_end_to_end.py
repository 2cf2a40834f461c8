#!/usr/bin/env python3
"""End-to-end: ingest 100,000 events over 275 series through 6 concurrent
connections (fire-and-forget + flush, and "ingest" batches of 500), then
compare every answer of >= 20 queries, topk, series and metrics requests
with a Python reference implementation of docs/protocol.md's semantics.

Checked: flush/ingest accepted counts; every group, point and agg of every
query (count/min/max/last exact, sum/avg to 1e-9 relative, rate, quantiles
within the sketch's 1 % relative accuracy of the exact lower-rank value);
reply step and tier; where / group_by (one and two tags, absent tags);
relative times; empty results; bad steps; topk order and values; series and
metrics listings; ping; stats counts.
"""

import os
import random
import shutil
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

SEED = 20251126
N_FAF_CONNS = 3
N_INGEST_CONNS = 3
BATCH = 500

SERVICES = [f"svc-{i}" for i in range(5)]
REGIONS = ["ap", "eu", "us"]
PATHS = [f"/p{i}" for i in range(12)]


def build_events(rng, t0):
    """Returns the event list. Timestamps are distinct within each metric (so
    "last" is unambiguous in any group) and lie in [t0-570s, t0-3s]."""
    lo, hi = t0 - 570_000, t0 - 3_000
    specs = [
        # metric, n events, series tag sets, value generator
        ("http.latency_ms", 40_000,
         [{"service": s, "region": r, "path": p} for s in SERVICES for r in REGIONS for p in PATHS],
         lambda: round(rng.lognormvariate(3.0, 1.0), 3)),
        ("cpu.load", 20_000,
         [{"service": s, "region": r} for s in SERVICES for r in REGIONS],
         lambda: 0.0 if rng.random() < 0.1 else round(rng.uniform(-50, 50), 4)),
        ("queue.depth", 20_000,
         [{"service": s, "path": p} for s in SERVICES for p in PATHS],
         lambda: float(max(0, int(rng.expovariate(0.2)) - 3))),
        ("temp.delta", 20_000,
         [{"service": s, "region": r} for s in SERVICES for r in REGIONS]
         + [{"service": s} for s in SERVICES],
         lambda: 0.0 if rng.random() < 0.05 else round(rng.gauss(0, 5), 2)),
    ]
    events = []
    for metric, n, tagsets, gen in specs:
        stamps = rng.sample(range(lo, hi + 1), n)
        for i, ts in enumerate(stamps):
            # Every series gets events; the rest are spread at random with a
            # skew so topk has a clear order.
            tags = tagsets[i] if i < len(tagsets) else \
                tagsets[min(len(tagsets) - 1, int(rng.paretovariate(1.2)) - 1)
                        if rng.random() < 0.3 else rng.randrange(len(tagsets))]
            v = gen()
            if v == 0:
                v = 0.0  # no -0.0
            events.append({"metric": metric, "ts": ts, "value": v, "tags": dict(tags)})
    rng.shuffle(events)
    return events


def ingest_all(node, events, chk):
    """Half fire-and-forget (ended by flush), half ingest batches, on
    N_FAF_CONNS + N_INGEST_CONNS concurrent connections."""
    half = len(events) // 2
    faf, batched = events[:half], events[half:]
    faf_parts = [faf[i::N_FAF_CONNS] for i in range(N_FAF_CONNS)]
    ing_parts = [batched[i::N_INGEST_CONNS] for i in range(N_INGEST_CONNS)]
    results = {}
    errors = []

    def faf_worker(idx, part):
        try:
            with node.client(timeout=120) as c:
                c.send_lines(part)
                r = c.request({"op": "flush", "id": f"flush-{idx}"}, timeout=120)
                results[("faf", idx)] = (len(part), r)
        except Exception as e:  # reported below
            errors.append(f"fire-and-forget connection {idx}: {e!r}")

    def ingest_worker(idx, part):
        try:
            with node.client(timeout=120) as c:
                batches = [part[i:i + BATCH] for i in range(0, len(part), BATCH)]
                reqs = [{"op": "ingest", "id": f"b{idx}-{j}", "events": b}
                        for j, b in enumerate(batches)]
                replies = c.pipeline(reqs, window=4, timeout=120)
                results[("ingest", idx)] = (batches, replies)
        except Exception as e:
            errors.append(f"ingest connection {idx}: {e!r}")

    threads = [threading.Thread(target=faf_worker, args=(i, p)) for i, p in enumerate(faf_parts)]
    threads += [threading.Thread(target=ingest_worker, args=(i, p)) for i, p in enumerate(ing_parts)]
    t_start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    took = time.time() - t_start
    for e in errors:
        chk.check(False, e)
    total = 0
    for (kind, idx), val in sorted(results.items()):
        if kind == "faf":
            n, r = val
            chk.check(r.get("ok") is True and r.get("accepted") == n and r.get("rejected") == 0
                      and r.get("id") == f"flush-{idx}",
                      f"flush on connection {idx}: expected accepted={n} rejected=0 "
                      f"id=flush-{idx}, got {r}")
            total += r.get("accepted") or 0
        else:
            batches, replies = val
            for j, (b, r) in enumerate(zip(batches, replies)):
                ok = (r.get("ok") is True and r.get("accepted") == len(b)
                      and r.get("rejected") == 0 and r.get("id") == f"b{idx}-{j}")
                chk.check(ok, f"ingest batch {idx}/{j}: expected accepted={len(b)} "
                              f"rejected=0, got {str(r)[:300]}")
                chk.check(r.get("errors") == [],
                          f"ingest batch {idx}/{j}: reply lacks \"errors\":[] "
                          f"(docs/protocol.md reply shape): {str(r)[:200]}")
                total += r.get("accepted") or 0
    chk.check(total == len(events), f"accepted total {total} != sent {len(events)}")
    h.log(f"ingested {total}/{len(events)} events in {took:.1f}s "
          f"({len(events) / max(took, 1e-9):.0f} events/s)")
    return total


def run_queries(c, ref, t0, chk):
    full = (t0 - 600_000, t0)
    mid_from = t0 - 300_000 + 517       # not bucket aligned
    mid_to = t0 - 120_000 + 250
    all_aggs = ["count", "sum", "min", "max", "avg", "last", "rate",
                "p50", "p90", "p99", "p99.9"]
    svc, reg, path = "svc-1", "eu", "/p3"
    # name, request fields, (from, to, step ms, res ms) for the reference
    Q = [
        ("lat all aggs 60s", dict(metric="http.latency_ms", step="60s", aggs=all_aggs), full, 60_000),
        ("lat by region 10s", dict(metric="http.latency_ms", step="10s", group_by=["region"],
                                   aggs=["count", "sum", "p50", "p99"]), full, 10_000),
        ("lat svc 1s", dict(metric="http.latency_ms", step="1s", where={"service": svc},
                            aggs=all_aggs), (mid_from, mid_from + 60_000), 1_000),
        ("lat by svc,region", dict(metric="http.latency_ms", step="60s",
                                   group_by=["service", "region"], aggs=all_aggs), full, 60_000),
        ("lat eu by path", dict(metric="http.latency_ms", step="60s", where={"region": reg},
                                group_by=["path"], aggs=["count", "p90", "last"]), full, 60_000),
        ("lat svc+eu by path 10s", dict(metric="http.latency_ms", step="10s",
                                        where={"service": svc, "region": reg},
                                        group_by=["path"], aggs=all_aggs), (mid_from, mid_to), 10_000),
        ("lat by path,region 10s", dict(metric="http.latency_ms", step="10s",
                                        group_by=["path", "region"],
                                        aggs=["count", "max", "p99.9"]), (mid_from, mid_to), 10_000),
        ("lat step 5m", dict(metric="http.latency_ms", step="5m", group_by=["region"],
                             aggs=all_aggs), full, 300_000),
        ("lat int step 30000", dict(metric="http.latency_ms", step=30_000,
                                    aggs=["count", "avg", "rate"]), full, 30_000),
        ("cpu all aggs 60s", dict(metric="cpu.load", step="60s", aggs=all_aggs), full, 60_000),
        ("cpu by service 10s", dict(metric="cpu.load", step="10s", group_by=["service"],
                                    aggs=["min", "max", "sum", "avg", "p50"]), full, 10_000),
        ("cpu by absent tag", dict(metric="cpu.load", step="60s", group_by=["path"],
                                   aggs=["count", "sum"]), full, 60_000),
        ("cpu by region,path(absent)", dict(metric="cpu.load", step="60s",
                                            group_by=["region", "path"],
                                            aggs=["count", "last"]), full, 60_000),
        ("queue by path 60s", dict(metric="queue.depth", step="60s", group_by=["path"],
                                   aggs=["count", "sum", "p50", "p99", "min"]), full, 60_000),
        ("queue path 1s", dict(metric="queue.depth", step="1s", where={"path": path},
                               aggs=all_aggs), (mid_from, mid_from + 120_000), 1_000),
        ("queue p0/p25/p75/p100", dict(metric="queue.depth", step="60s",
                                       aggs=["p0", "p25", "p75", "p100", "count"]), full, 60_000),
        ("temp by region (absent)", dict(metric="temp.delta", step="60s", group_by=["region"],
                                         aggs=all_aggs), full, 60_000),
        # {service} series are finalised in their partition, {service, region}
        # ones are not: the groups collide and the coordinator gathers again.
        ("temp by service (mixed tag sets)", dict(metric="temp.delta", step="60s",
                                                  group_by=["service"], aggs=all_aggs),
         full, 60_000),
        ("temp by region,service 10s", dict(metric="temp.delta", step="10s",
                                            group_by=["region", "service"],
                                            aggs=["count", "last", "min", "max"]), full, 10_000),
        ("temp 1s window", dict(metric="temp.delta", step="1s", aggs=all_aggs),
         (t0 - 200_000 + 123, t0 - 140_000 + 7), 1_000),
        ("temp where svc", dict(metric="temp.delta", step="10s", where={"service": "svc-4"},
                                group_by=["region"], aggs=["count", "sum", "p90"]), full, 10_000),
        ("lat 180 groups 1s (big reply)", dict(metric="http.latency_ms", step="1s",
                                               group_by=["service", "region", "path"],
                                               aggs=["count", "last"]), full, 1_000),
        ("nothing for unknown svc", dict(metric="http.latency_ms", step="10s",
                                         where={"service": "nope"}, aggs=["count"]), full, 10_000),
        ("unknown metric", dict(metric="no.such.metric", step="10s", aggs=["count"]), full, 10_000),
        ("empty range", dict(metric="http.latency_ms", step="1s", aggs=all_aggs),
         (t0 - 590_000, t0 - 575_000), 1_000),
    ]
    for name, fields, (frm, to), step in Q:
        req = dict(op="query", id=name, **fields)
        req["from"], req["to"] = frm, to
        r = c.request(req, timeout=60)
        label = f"query [{name}]"
        if not chk.check(r.get("ok") is True, f"{label}: not ok: {str(r)[:300]}"):
            continue
        chk.check(r.get("id") == name, f"{label}: id not echoed: {r.get('id')!r}")
        chk.check(r.get("step") == step, f"{label}: step {r.get('step')!r} != {step}")
        # The planner serves from the coarsest tier dividing the step (the
        # answer stays the 1s tier's: the reference below uses 1s buckets).
        tier = "1m" if step % 60_000 == 0 else "1s"
        chk.check(r.get("tier") == tier, f"{label}: tier {r.get('tier')!r} != {tier!r}")
        chk.check(r.get("partial") is False, f"{label}: partial {r.get('partial')!r}")
        exp = ref.query(fields["metric"], frm, to, step, 1_000, fields["aggs"],
                        fields.get("where"), fields.get("group_by"))
        if name in ("nothing for unknown svc", "unknown metric", "empty range"):
            chk.check(r.get("series") == [], f"{label}: expected \"series\":[], got "
                                             f"{str(r.get('series'))[:200]}")
            chk.check(exp == [], f"{label}: reference is not empty (test bug)")
        h.compare_series(chk, label, exp, r, fields["aggs"], fields.get("group_by"))
    return len(Q)


def run_relative_queries(c, ref, chk):
    """Relative times: the node's `now` is somewhere between our before/after
    clock readings; accept any reference whose from boundary lies there."""
    n = 0
    for frm_text, to_text, step, aggs in [("-5m", "now", 10_000, ["count", "sum", "max", "p99"]),
                                          ("now-5m", "now", 60_000, ["count", "min", "last"])]:
        req = {"op": "query", "metric": "http.latency_ms", "from": frm_text, "to": to_text,
               "step": step, "aggs": aggs, "group_by": ["region"]}
        before = h.now_ms()
        r = c.request(req, timeout=60)
        after = h.now_ms()
        n += 1
        label = f"query [relative from={frm_text}]"
        tier = "1m" if step % 60_000 == 0 else "1s"
        if not chk.check(r.get("ok") is True and r.get("tier") == tier and r.get("step") == step,
                         f"{label}: {str(r)[:300]}"):
            continue
        # Bucket starts >= from: the boundary is from rounded up to 1s.
        lo_b = -(-(before - 300_000) // 1000) * 1000
        hi_b = -(-(after - 300_000) // 1000) * 1000
        cands = list(range(lo_b, hi_b + 1, 1000))
        best = None
        for frm in cands:
            exp = ref.query("http.latency_ms", frm, after + 10_000, step, 1_000, aggs,
                            None, ["region"])
            sub = h.Checker("probe", max_print=0)
            h.compare_series(sub, label, exp, r, aggs, ["region"])
            if not sub.failures:
                best = (frm, sub)
                break
            if best is None or len(sub.failures) < len(best[1].failures):
                best = (frm, sub)
        chk.count(best[1].compared)
        chk.check(not best[1].failures,
                  f"{label}: no from boundary in [{cands[0]}, {cands[-1]}] matches; closest "
                  f"({best[0]}) has {len(best[1].failures)} diffs, e.g. {best[1].failures[:3]}")

    # Defaults: from = now-15m (covers all data), to = now, step = 1s,
    # aggs = ["count"].
    r = c.request({"op": "query", "metric": "queue.depth", "where": {"path": "/p7"}}, timeout=60)
    n += 1
    label = "query [defaults]"
    if chk.check(r.get("ok") is True, f"{label}: {str(r)[:300]}"):
        chk.check(r.get("step") == 1000 and r.get("tier") == "1s",
                  f"{label}: step/tier {r.get('step')!r}/{r.get('tier')!r}, expected 1000/'1s'")
        exp = ref.query("queue.depth", 0, 1 << 62, 1000, 1000, ["count"], {"path": "/p7"}, None)
        h.compare_series(chk, label, exp, r, ["count"])
        pts = (r.get("series") or [{}])[0].get("points", [])
        chk.check(all(set(p) == {"t", "count"} for p in pts),
                  f"{label}: default aggs should be only count; got keys "
                  f"{sorted(set(k for p in pts for k in p))}")

    # The 1m tier: a query from an hour ago is served by tier "1m".
    aggs = ["count", "sum", "min", "max", "last", "p50", "p99"]
    r = c.request({"op": "query", "metric": "temp.delta", "from": "-1h", "to": "now",
                   "step": "1m", "aggs": aggs, "group_by": ["service"]}, timeout=60)
    n += 1
    label = "query [tier 1m]"
    if chk.check(r.get("ok") is True, f"{label}: {str(r)[:300]}"):
        chk.check(r.get("tier") == "1m" and r.get("step") == 60_000,
                  f"{label}: tier/step {r.get('tier')!r}/{r.get('step')!r}, expected '1m'/60000")
        exp = ref.query("temp.delta", 0, 1 << 62, 60_000, 60_000, aggs, None, ["service"])
        h.compare_series(chk, label, exp, r, aggs, ["service"])

    # The 1h tier: from three days ago.
    r = c.request({"op": "query", "metric": "queue.depth", "from": "-3d", "to": "now",
                   "step": "1h", "aggs": aggs, "group_by": ["path"]}, timeout=60)
    n += 1
    label = "query [tier 1h]"
    if chk.check(r.get("ok") is True, f"{label}: {str(r)[:300]}"):
        chk.check(r.get("tier") == "1h" and r.get("step") == 3_600_000,
                  f"{label}: tier/step {r.get('tier')!r}/{r.get('step')!r}, expected '1h'/3600000")
        exp = ref.query("queue.depth", 0, 1 << 62, 3_600_000, 3_600_000, aggs, None, ["path"])
        h.compare_series(chk, label, exp, r, aggs, ["path"])

    # Duration units: "1w" on the 1h tier; "2m" given as a step on the 1s tier.
    for frm, step_text, step, tier, res in [("-3d", "1w", 604_800_000, "1h", 3_600_000),
                                            ("-10m", "2m", 120_000, "1m", 1_000)]:
        r = c.request({"op": "query", "metric": "cpu.load", "from": frm, "to": "now",
                       "step": step_text, "aggs": ["count", "sum", "max"]}, timeout=60)
        n += 1
        label = f"query [step {step_text}]"
        if chk.check(r.get("ok") is True, f"{label}: {str(r)[:300]}"):
            chk.check(r.get("tier") == tier and r.get("step") == step,
                      f"{label}: tier/step {r.get('tier')!r}/{r.get('step')!r}, expected "
                      f"{tier!r}/{step}")
            if frm == "-3d":  # all data inside the window whatever `now` is
                exp = ref.query("cpu.load", 0, 1 << 62, step, res, ["count", "sum", "max"])
                h.compare_series(chk, label, exp, r, ["count", "sum", "max"])
    return n


def run_bad_queries(c, t0, chk):
    cases = [
        ("step 1500ms on 1s tier", {"metric": "http.latency_ms", "step": "1500ms",
                                    "from": t0 - 300_000, "to": t0}),
        ("step 10s on 1m tier", {"metric": "http.latency_ms", "step": "10s", "from": "-1h"}),
        ("step 0", {"metric": "http.latency_ms", "step": 0, "from": t0 - 300_000, "to": t0}),
        ("step negative", {"metric": "http.latency_ms", "step": -1000}),
        ("unknown agg", {"metric": "http.latency_ms", "aggs": ["median"]}),
        ("from >= to", {"metric": "http.latency_ms", "from": t0, "to": t0 - 60_000}),
        ("bad time", {"metric": "http.latency_ms", "from": "yesterday"}),
        ("missing metric", {"step": "10s"}),
        ("where not strings", {"metric": "http.latency_ms", "where": {"service": 1}}),
        ("group_by not list", {"metric": "http.latency_ms", "group_by": "region"}),
    ]
    for name, fields in cases:
        r = c.request(dict(op="query", id=name, **fields), timeout=30)
        chk.check(h.is_error(r, "bad_request") and r.get("id") == name,
                  f"bad query [{name}]: expected bad_request echoing id, got {str(r)[:300]}")
    return len(cases)


def run_topk(c, ref, t0, chk):
    full = (t0 - 600_000, t0)
    cases = [
        ("lat path count k3", dict(metric="http.latency_ms", by="path", k=3, agg="count"), full, None),
        ("lat path count k10", dict(metric="http.latency_ms", by="path", k=10, agg="count"), full, None),
        ("lat path sum k10", dict(metric="http.latency_ms", by="path", k=10, agg="sum"), full, None),
        ("lat path sum k3", dict(metric="http.latency_ms", by="path", k=3, agg="sum"), full, None),
        ("lat path p99 k10", dict(metric="http.latency_ms", by="path", k=10, agg="p99"), full, None),
        ("lat path p99 k3 eu", dict(metric="http.latency_ms", by="path", k=3, agg="p99",
                                    where={"region": "eu"}), full, {"region": "eu"}),
        ("queue path count svc-2", dict(metric="queue.depth", by="path", k=10, agg="count",
                                        where={"service": "svc-2"}),
         (t0 - 400_000 + 333, t0 - 100_000), {"service": "svc-2"}),
        ("lat service max k10", dict(metric="http.latency_ms", by="service", k=10, agg="max"), full, None),
        ("cpu by path (absent)", dict(metric="cpu.load", by="path", k=10, agg="count"), full, None),
    ]
    for name, fields, (frm, to), where in cases:
        req = dict(op="topk", id=name, **fields)
        req["from"], req["to"] = frm, to
        r = c.request(req, timeout=60)
        label = f"topk [{name}]"
        if not chk.check(r.get("ok") is True and isinstance(r.get("top"), list),
                         f"{label}: {str(r)[:300]}"):
            continue
        chk.check(r.get("partial") is False, f"{label}: partial {r.get('partial')!r}")
        chk.check(r.get("id") == name, f"{label}: id not echoed")
        agg, k = fields["agg"], fields["k"]
        exact = ref.topk_values(fields["metric"], fields["by"], agg, frm, to, 1000, where)
        top = r["top"]
        chk.check(len(top) == min(k, len(exact)),
                  f"{label}: {len(top)} entries, expected {min(k, len(exact))}")
        q = h.parse_quantile(agg)

        def scalar(v):
            # The exact value of the agg (quantiles: the lower-rank element).
            return v[h.lower_rank_candidates(q, len(v))[0]] if q is not None else v
        # Exact ranking by (value desc, tag asc).
        ranked = sorted(exact.items(), key=lambda kv: (-scalar(kv[1][0]), kv[0]))
        got_tags = [e.get("tag") for e in top]
        for e in top:
            tv = e.get("tag")
            if not chk.check(tv in exact, f"{label}: unexpected tag {tv!r}"):
                continue
            ok, desc = h.compare_agg(agg, exact[tv][0], e.get("value"), exact[tv][1], exact[tv][2])
            chk.count()
            chk.check(ok, f"{label}: {tv}: expected {desc}, got {e.get('value')!r}")
        vals = [e.get("value") for e in top]
        chk.check(all(isinstance(v, (int, float)) for v in vals) and
                  all(vals[i] >= vals[i + 1] for i in range(len(vals) - 1)),
                  f"{label}: values not sorted descending: {vals}")
        if agg == "count" or agg == "max":
            # Exact aggs: the order (ties by tag ascending) must match exactly.
            exp_tags = [t for t, _ in ranked[:k]]
            chk.check(got_tags == exp_tags, f"{label}: tags {got_tags} != expected {exp_tags}")
        else:
            # Approximate / float aggs: no clearly better tag may be left out.
            if top and all(tv in exact for tv in got_tags):
                worst = min(scalar(exact[tv][0]) for tv in got_tags)
                for tv, (v, _, _) in exact.items():
                    if tv not in got_tags:
                        chk.check(scalar(v) <= worst + 0.025 * abs(worst) + 1e-9,
                                  f"{label}: tag {tv} (exact {scalar(v)}) beats returned "
                                  f"minimum {worst} but is missing")
    # Bad topk requests.
    for name, fields in [("missing by", {"metric": "http.latency_ms"}),
                         ("k 0", {"metric": "http.latency_ms", "by": "path", "k": 0}),
                         ("unknown agg", {"metric": "http.latency_ms", "by": "path", "agg": "x"})]:
        r = c.request(dict(op="topk", id=name, **fields), timeout=30)
        chk.check(h.is_error(r, "bad_request") and r.get("id") == name,
                  f"bad topk [{name}]: expected bad_request, got {str(r)[:300]}")
    return len(cases) + 3


def run_listings(c, ref, chk, total_events):
    def series_set(reply):
        return {(s.get("metric"), tuple(sorted((s.get("tags") or {}).items())))
                for s in reply.get("series", [])}

    for name, req, metric, where in [
        ("cpu.load", {"metric": "cpu.load"}, "cpu.load", None),
        ("lat eu", {"metric": "http.latency_ms", "where": {"region": "eu"}}, "http.latency_ms",
         {"region": "eu"}),
        ("all", {"limit": 10000}, None, None),
        ("where svc-3 all metrics", {"where": {"service": "svc-3"}, "limit": 10000}, None,
         {"service": "svc-3"}),
    ]:
        r = c.request(dict(op="series", **req), timeout=60)
        exp = ref.series_set(metric, where)
        ok = r.get("ok") is True and isinstance(r.get("series"), list)
        if chk.check(ok, f"series [{name}]: {str(r)[:300]}"):
            got = series_set(r)
            chk.count(len(exp))
            chk.check(got == exp and len(r["series"]) == len(exp),
                      f"series [{name}]: {len(r['series'])} listed, expected {len(exp)}; "
                      f"missing {sorted(exp - got)[:3]}, extra {sorted(got - exp)[:3]}")
            chk.check(r.get("truncated") is False, f"series [{name}]: truncated "
                                                   f"{r.get('truncated')!r}")
    r = c.request({"op": "series", "metric": "http.latency_ms", "limit": 5}, timeout=60)
    chk.check(r.get("ok") is True and len(r.get("series", [])) == 5 and r.get("truncated") is True,
              f"series limit 5: expected 5 entries and truncated:true, got "
              f"{len(r.get('series', []))} / {r.get('truncated')!r}")

    r = c.request({"op": "metrics"}, timeout=60)
    exp = sorted(ref.metrics().items())
    if chk.check(r.get("ok") is True and isinstance(r.get("metrics"), list),
                 f"metrics: {str(r)[:300]}"):
        got = [(m.get("name"), m.get("series")) for m in r["metrics"]]
        chk.count(len(exp))
        chk.check(got == exp, f"metrics: got {got}, expected {exp}")

    r = c.request({"op": "ping", "id": 42}, timeout=10)
    chk.check(r.get("ok") is True and r.get("status") == "ready" and r.get("node") == "t1"
              and isinstance(r.get("version"), str) and r.get("id") == 42,
              f"ping: {r}")

    r = c.request({"op": "stats"}, timeout=30)
    if chk.check(r.get("ok") is True, f"stats: {str(r)[:300]}"):
        ev = r.get("events") or {}
        chk.check(ev.get("accepted") == total_events and ev.get("rejected") == 0,
                  f"stats events: {ev}, expected accepted={total_events} rejected=0")
        parts = r.get("partitions")
        if chk.check(isinstance(parts, list) and len(parts) == 8,
                     f"stats partitions: expected 8 entries, got {str(parts)[:200]}"):
            chk.check(sum(p.get("events", 0) for p in parts) == total_events,
                      f"stats: partition events sum {sum(p.get('events', 0) for p in parts)} "
                      f"!= {total_events}")
            n_series = len(ref.series_set())
            chk.check(sum(p.get("series", 0) for p in parts) == n_series,
                      f"stats: partition series sum {sum(p.get('series', 0) for p in parts)} "
                      f"!= {n_series}")
        chk.check(isinstance(r.get("connections"), dict),
                  f"stats: \"connections\" object missing: {str(r)[:300]}")
        if isinstance(parts, list):
            chk.check(sorted(p.get("id") for p in parts) == list(range(8)),
                      f"stats: partition ids {[p.get('id') for p in parts]}")
        chk.check(r.get("node") == "t1" and isinstance(r.get("uptime_ms"), int),
                  f"stats: node/uptime_ms {r.get('node')!r}/{r.get('uptime_ms')!r}")


def run_protocol_extras(node, chk):
    """Ordering and request semantics of docs/protocol.md on new metrics
    (run after the exact listings/stats checks)."""
    now = h.now_ms()
    with node.client(timeout=60) as c:
        # A request sees every event sent before it on the same connection,
        # without a flush.
        c.send_lines({"metric": "extra.ryw", "ts": now - 100_000 + i * 7, "value": i}
                     for i in range(1000))
        r = c.request({"op": "query", "metric": "extra.ryw", "from": now - 200_000,
                       "to": now + 1000, "step": "60s", "aggs": ["count", "sum"]})
        pts = [p for s in r.get("series", []) for p in s.get("points", [])]
        chk.check(sum(p.get("count", 0) for p in pts) == 1000 and
                  sum(p.get("sum", 0) for p in pts) == sum(range(1000)),
                  f"query right after 1000 fire-and-forget lines (no flush) sees "
                  f"{sum(p.get('count', 0) for p in pts)} of them: {str(r)[:300]}")
        r = c.request({"op": "flush"})
        chk.check(r.get("accepted") == 1000 and r.get("rejected") == 0, f"flush: {r}")

        r = c.request({"op": "flush", "id": "empty"})
        chk.check(r.get("ok") is True and r.get("accepted") == 0 and r.get("rejected") == 0
                  and r.get("id") == "empty", f"flush with nothing sent since the last: {r}")

        # Pipelining: 120 requests written at once, replies in request order.
        reqs = []
        for i in range(120):
            if i % 3 == 0:
                reqs.append({"op": "ping", "id": i})
            elif i % 3 == 1:
                reqs.append({"op": "query", "id": i, "metric": "extra.ryw", "from": now - 200_000,
                             "to": now + 1000, "step": "10s", "aggs": ["count"]})
            else:
                reqs.append({"op": "nope", "id": i})
        replies = c.pipeline(reqs, window=len(reqs))
        ids = [r.get("id") for r in replies]
        chk.check(ids == list(range(120)), f"pipelined replies out of order: ids {ids[:20]}...")
        chk.check(all((r.get("ok") is True) == (i % 3 != 2) for i, r in enumerate(replies)),
                  "pipelined replies: wrong ok flags")
        chk.check(all(h.is_error(r, "unknown_op") for i, r in enumerate(replies) if i % 3 == 2),
                  "pipelined unknown ops: code is not unknown_op")

        # Any JSON value as id is echoed.
        for rid in [{"a": [1, 2, {"b": None}]}, [1, "x"], "str", 3.5, -7, True, ""]:
            r = c.request({"op": "ping", "id": rid})
            chk.check(r.get("ok") is True and "id" in r and r["id"] == rid and
                      type(r["id"]) is type(rid),
                      f"ping id {rid!r} echoed as {r.get('id', '<absent>')!r}")
        # "id": null -- "any JSON value" includes null, but a reader may take
        # null as "no id"; only noted.
        r = c.request({"op": "ping", "id": None})
        if not ("id" in r and r["id"] is None):
            chk.note('{"op":"ping","id":null} is answered without "id" (doc: "id" (any JSON '
                     'value) is echoed)')

        # ingest with per-event errors.
        evs = [{"metric": "extra.mixed", "ts": now - 1000, "value": 1},
               {"metric": "extra.mixed", "ts": now - 2000, "value": "x"},
               {"metric": "extra.mixed", "ts": now - 3000, "value": 2},
               {"metric": "", "ts": now - 4000},
               {"metric": "extra.mixed", "ts": now - 5000, "tags": {"a": 1}},
               {"metric": "extra.mixed", "ts": now - 6000, "value": 3}]
        r = c.request({"op": "ingest", "id": "mixed", "events": evs})
        errs = r.get("errors") if isinstance(r.get("errors"), list) else []
        chk.check(r.get("ok") is True and r.get("accepted") == 3 and r.get("rejected") == 3,
                  f"ingest with 3 invalid events: {str(r)[:300]}")
        chk.check([e.get("index") for e in errs] == [1, 3, 4] and
                  all(e.get("code") == "invalid_event" and isinstance(e.get("message"), str)
                      for e in errs),
                  f"ingest errors: expected indexes [1,3,4] with invalid_event, got {errs}")
        for bad in [{"op": "ingest", "id": "nl", "events": "x"},
                    {"op": "ingest", "id": "nl2", "events": [1, "a"]}]:
            r = c.request(bad)
            ok = h.is_error(r, "bad_request") or (r.get("ok") is True and r.get("accepted") == 0
                                                  and r.get("rejected") == len(bad["events"]))
            chk.check(ok and r.get("id") == bad["id"], f"ingest {bad}: {str(r)[:300]}")

        # A repeated idempotency key is not applied twice.
        batch = [{"metric": "extra.idem", "ts": now - 1000 - i, "value": i} for i in range(10)]
        r1 = c.request({"op": "ingest", "events": batch, "idempotency_key": "k-1"})
        r2 = c.request({"op": "ingest", "events": batch, "idempotency_key": "k-1"})
        r3 = c.request({"op": "ingest", "events": batch[:3], "idempotency_key": "k-2"})
        chk.check(r1.get("ok") is True and r1.get("accepted") == 10, f"idempotent ingest 1: {r1}")
        chk.check(r2.get("ok") is True, f"idempotent ingest repeated: {r2}")
        chk.check(r3.get("ok") is True and r3.get("accepted") == 3, f"ingest key k-2: {r3}")
        r = c.request({"op": "query", "metric": "extra.idem", "from": now - 60_000,
                       "to": now + 1000, "step": "60s", "aggs": ["count"]})
        n = sum(p.get("count", 0) for s in r.get("series", []) for p in s.get("points", []))
        chk.check(n == 13, f"idempotency key repeated: {n} events counted, expected 13 "
                           f"(10 once + 3); replies {r1} / {r2}")


MAIN_METRICS = ["cpu.load", "http.latency_ms", "queue.depth", "temp.delta"]


def check_recovered(node, ref, t0, chk, label):
    """After a restart on the same storage: every metric's full-window answer
    and the listings equal the reference again (nothing acked is lost)."""
    aggs = ["count", "sum", "min", "max", "last", "p50", "p99"]
    with h.Session(node, chk) as c:
        for metric in MAIN_METRICS:
            for group_by in ([], ["service"]):
                r = c.request({"op": "query", "metric": metric, "from": t0 - 600_000, "to": t0,
                               "step": "60s", "aggs": aggs, "group_by": group_by})
                exp = ref.query(metric, t0 - 600_000, t0, 60_000, 1000, aggs, None, group_by)
                if chk.check(r.get("ok") is True, f"{label} {metric}: {str(r)[:300]}"):
                    h.compare_series(chk, f"{label} {metric} by {group_by}", exp, r, aggs)
        r = c.request({"op": "metrics"})
        got = [(m.get("name"), m.get("series")) for m in r.get("metrics", [])
               if m.get("name") in MAIN_METRICS]
        chk.check(got == sorted(ref.metrics().items()), f"{label} metrics: {got}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_end_to_end")
    rng = random.Random(SEED)
    storage = tempfile.mkdtemp(prefix="cairn-it-e2e-storage-")
    try:
        with h.Node(args.bin_dir, args.source_dir, name="t1", keep=args.keep,
                    storage_dir=storage) as node:
            t0 = h.now_ms()
            events = build_events(rng, t0)
            ref = h.Reference(events)
            n_series = len(ref.series_set())
            h.log(f"generated {len(events)} events over {n_series} series, "
                  f"{len(ref.by_metric)} metrics")
            total = ingest_all(node, events, chk)
            with h.Session(node, chk) as c:
                if h.now_ms() - t0 > 240_000:
                    chk.require(False, "ingest took more than 4 minutes; the 1s tier windows "
                                       "of the queries would no longer be valid")
                n_q = run_queries(c, ref, t0, chk)
                n_q += run_relative_queries(c, ref, chk)
                n_q += run_bad_queries(c, t0, chk)
                n_t = run_topk(c, ref, t0, chk)
                run_listings(c, ref, chk, total)
            try:
                run_protocol_extras(node, chk)
            except (OSError, TimeoutError, ValueError) as e:
                chk.check(False, f"protocol extras: {e!r}")
            chk.require(node.alive(), "node died during the test")
            took = node.stop(10)
            h.log(f"{n_q} queries and {n_t} topk requests checked; node stopped in {took:.2f}s")
            if chk.failures:
                node.dump_log(60)

        # Restart on the same storage after SIGTERM, then after SIGKILL.
        for how in ("SIGTERM", "SIGKILL"):
            h.log(f"-- restart after {how}")
            with h.Node(args.bin_dir, args.source_dir, name="t1", keep=args.keep,
                        storage_dir=storage) as node:
                before = chk.compared
                check_recovered(node, ref, t0, chk, f"after {how}:")
                h.log(f"compared {chk.compared - before} values after the restart")
                if how == "SIGTERM":
                    node.kill()  # the next restart recovers from a SIGKILL
                else:
                    node.stop(10)
                if chk.failures:
                    node.dump_log(40)
    finally:
        if not args.keep:
            shutil.rmtree(storage, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
