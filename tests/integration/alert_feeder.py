"""Shared pieces of the alerting integration tests (test_alerts.py,
test_alerts_cluster.py): a background event feeder, a rule template and the
receiver's notification keys by status."""

import json
import threading
import time

from cairn_harness import now_ms


class Feeder:
    """Sends one event per 100 ms for each active (metric, tags) -> value,
    timestamped now, fire-and-forget on its own connection to one node
    (reconnecting while it is down or restarting)."""

    def __init__(self, node):
        self.node = node
        self.values = {}
        self.first_sent = {}  # metric -> ts of its first event
        self.lock = threading.Lock()
        self.stop_flag = False
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def set(self, metric, value, tags=None):
        key = (metric, json.dumps(tags or {}, sort_keys=True))
        with self.lock:
            if value is None:
                self.values.pop(key, None)
            else:
                self.values[key] = value

    def run(self):
        client = None
        while not self.stop_flag:
            with self.lock:
                items = list(self.values.items())
            if items and self.node.alive():
                try:
                    if client is None:
                        client = self.node.client(5.0)
                    ts = now_ms()
                    for (m, _), _ in items:
                        self.first_sent.setdefault(m, ts)
                    client.send_lines([{"metric": m, "ts": ts, "value": v,
                                        "tags": json.loads(t)}
                                       for (m, t), v in items])
                except OSError:
                    client = None  # node restarting
            elif not self.node.alive():
                client = None
            time.sleep(0.1)

    def close(self):
        self.stop_flag = True
        self.thread.join(5)


def rule(name, metric, rx, **kw):
    """A rule on `metric` notifying receiver `rx`: avg over 2 s > 100
    unless `kw` says otherwise."""
    r = {"name": name, "metric": metric, "agg": "avg", "window": "2s",
         "op": ">", "threshold": 100, "receivers": [{"url": rx.url}],
         "annotations": {"summary": "{{name}} is {{value}}"}}
    r.update(kw)
    return r


def keys_by_status(rx, name):
    out = {"firing": set(), "resolved": set()}
    for status, key, _, _ in rx.delivered(name):
        out[status].add(key)
    return out
