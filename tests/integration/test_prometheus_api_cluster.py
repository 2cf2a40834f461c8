#!/usr/bin/env python3
"""Partial answers on the Prometheus API (docs/prometheus-api.md, "Errors").

A 2-node cluster holds 40 series of one metric. With both nodes up,
`count_over_time` over /api/v1/query counts every sample and has no
`warnings`. After SIGKILL of n2, the same query on n1 is still
"status":"success" with the series of n1's partitions only, and one warning
naming exactly n2's partitions (the `missing_partitions` of the Cairn
replies); /api/v1/series says the same.
"""

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402

SERIES = 40
PER_SERIES = 30




def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("prometheus_api_cluster")
    cluster = Cluster(args, n=2, partitions=8, connection_timeout="2s")
    try:
        cluster.start()
        n1, n2 = cluster.nodes
        now = h.now_ms()
        t = now // 1000 * 1000
        events = [{"metric": "prom_part", "ts": t - 60000 + k * 1000 + 500, "value": k,
                   "tags": {"s": f"s{i}"}}
                  for i in range(SERIES) for k in range(PER_SERIES)]
        with n1.client(30) as c:
            r = c.request({"op": "ingest", "events": events}, 30)
        chk.require(r.get("ok") and r.get("accepted") == len(events), f"ingest: {r}")
        q = {"query": "count_over_time(prom_part[2m])", "time": t / 1000}
        st, body = h.http_get_json(n1.http_port, "/api/v1/query", q)
        chk.check(st == 200 and body.get("status") == "success", f"full: {st} {body}")
        res = body.get("data", {}).get("result", [])
        chk.check(len(res) == SERIES, f"full: {len(res)} series, want {SERIES}")
        chk.check(all(x["value"][1] == str(PER_SERIES) for x in res),
                  f"full: counts {[x['value'][1] for x in res][:5]}")
        chk.check("warnings" not in body, f"full answer has warnings: {body.get('warnings')}")
        chk.count(len(res))

        owned2 = cluster.owned(n2.name)
        n2.kill()
        time.sleep(3)
        st, body = h.http_get_json(n1.http_port, "/api/v1/query", q)
        chk.check(st == 200 and body.get("status") == "success", f"partial: {st} {str(body)[:300]}")
        res = body.get("data", {}).get("result", [])
        chk.check(0 < len(res) < SERIES,
                  f"partial: {len(res)} series, want some but not all of {SERIES}")
        chk.check(all(x["value"][1] == str(PER_SERIES) for x in res),
                  "partial: a series answered with fewer samples")
        w = body.get("warnings", [])
        chk.check(len(w) == 1 and w[0].startswith("partial answer: partitions ")
                  and json.dumps(owned2, separators=(",", ":")) in w[0],
                  f"partial: warnings {w}, want one naming {owned2}")
        chk.count(len(res))
        st, body = h.http_get_json(n1.http_port, "/api/v1/series", {"match[]": "prom_part"})
        chk.check(st == 200 and 0 < len(body.get("data", [])) < SERIES
                  and len(body.get("warnings", [])) == 1,
                  f"series while partial: {st} {str(body)[:300]}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
