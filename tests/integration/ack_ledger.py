"""Acknowledged ingest and the completeness check, shared by the cluster
fault tests (test_cluster_invariant.py, test_sagas.py; docs/cluster.md,
"The completeness invariant").

- `Ledger`: what was sent and acknowledged, with the times the client saw.
- `Ingest`: a thread sending keyed `ingest` batches to one node; a failed
  request is retried with the same key, so "acknowledged" is exact.
- `Queries`: a thread querying one node in a loop that checks at EVERY
  answer: a complete answer counts at least the events acknowledged before
  it was sent and at most the events sent before it came back.
Standard library only.
"""

import random
import threading
import time

import cairn_harness as h

SEED = 4242
BATCH = 200
QUERY = {"op": "query", "metric": "x", "from": "-15m", "step": "60s",
         "aggs": ["count"]}
# Codes a retried ingest may see while members restart or partitions move.
RETRYABLE = (None, "unavailable", "timeout")


class Ledger:
    """What was sent and acknowledged, with the times the client saw."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sent = 0
        self.acks = []  # (time acknowledged, events), in time order

    def will_send(self, n):
        with self.lock:
            self.sent += n

    def acked(self, n):
        with self.lock:
            self.acks.append((time.monotonic(), n))

    def acked_before(self, t):
        with self.lock:
            return sum(n for at, n in self.acks if at < t)

    def sent_total(self):
        with self.lock:
            return self.sent

    def acked_total(self):
        with self.lock:
            return sum(n for _, n in self.acks)


class Ingest(threading.Thread):
    def __init__(self, node, ledger, chk, name, t0, key_prefix="inv"):
        super().__init__(daemon=True)
        self.key_prefix = key_prefix
        self.node, self.ledger, self.chk, self.name = node, ledger, chk, name
        self.rng = random.Random(f"{SEED}-{name}")
        self.t0 = t0
        self.stop_flag = threading.Event()
        self.requests = 0
        self.failures = 0
        self.max_ack_s = 0.0

    def run(self):
        seq = 0
        while not self.stop_flag.is_set():
            seq += 1
            batch = [{"metric": "x", "ts": self.t0 - self.rng.randrange(0, 60_000),
                      "value": self.rng.uniform(0, 100),
                      "tags": {"host": f"h{self.rng.randrange(50)}"}}
                     for _ in range(BATCH)]
            key = f"{self.key_prefix}-{self.name}-{seq}"
            self.ledger.will_send(len(batch))
            for attempt in range(200):
                started = time.monotonic()
                try:
                    with self.node.client(15) as c:
                        r = c.request({"op": "ingest", "events": batch,
                                       "idempotency_key": key}, 15)
                except (OSError, TimeoutError, ValueError) as e:
                    r = {"error": repr(e)}
                self.requests += 1
                if r.get("ok") is True and r.get("accepted") == len(batch):
                    self.ledger.acked(len(batch))
                    self.max_ack_s = max(self.max_ack_s, time.monotonic() - started)
                    break
                code = (r.get("error") or {}).get("code") if isinstance(
                    r.get("error"), dict) else None
                self.chk.check(code in RETRYABLE,
                               f"{self.name}: unexpected ingest reply {str(r)[:200]}")
                self.failures += 1
                time.sleep(0.05)
            else:
                self.chk.check(False, f"{self.name}: batch {key} never acknowledged")
            time.sleep(0.005)


class Queries(threading.Thread):
    """Queries one node in a loop and checks the invariant at every answer."""

    def __init__(self, node, ledger, chk):
        super().__init__(daemon=True)
        self.node, self.ledger, self.chk = node, ledger, chk
        self.stop_flag = threading.Event()
        self.complete = 0
        self.partial = 0
        self.errors = 0

    def run(self):
        while not self.stop_flag.is_set():
            if not self.node.alive():
                time.sleep(0.1)
                continue
            floor = None
            try:
                with self.node.client(10) as c:
                    floor = self.ledger.acked_before(time.monotonic())
                    r = c.request(QUERY, 10)
                ceiling = self.ledger.sent_total()
            except (OSError, TimeoutError, ValueError):
                self.errors += 1
                time.sleep(0.05)
                continue
            if r.get("ok") is not True:
                self.errors += 1
            elif r.get("partial") is False:
                self.complete += 1
                got = count_of(r)
                self.chk.check(floor <= got <= ceiling,
                               f"{self.node.name}: complete answer counts {got}, "
                               f"but {floor} events were acknowledged before the "
                               f"query (at most {ceiling} sent)")
                self.chk.count()
            else:
                self.partial += 1
                ph = r.get("pending_hints")
                if ph is not None:
                    self.chk.check(isinstance(ph, dict) and all(
                        int(p) in r.get("missing_partitions", []) for p in ph),
                        f"{self.node.name}: pending_hints not among missing: {str(r)[:300]}")
            time.sleep(0.02)


def count_of(reply):
    """Events counted by a QUERY reply."""
    return sum(p.get("count", 0) for s in reply.get("series", [])
               for p in s.get("points", []))


def start_load(cluster, chk, writers, key_prefix="inv"):
    """Starts acknowledged ingest into each of `writers` (threads named a,
    b, ...) and the invariant's checking queries on every member, then
    waits 2 s. Returns (ledger, t0, ingest threads, query threads)."""
    ledger = Ledger()
    t0 = h.now_ms()
    ingest = [Ingest(w, ledger, chk, chr(ord("a") + i), t0, key_prefix)
              for i, w in enumerate(writers)]
    queries = [Queries(n, ledger, chk) for n in cluster.nodes]
    for t in ingest + queries:
        t.start()
    time.sleep(2)
    return ledger, t0, ingest, queries


def stop_queries(chk, queries):
    """Stops the checking queries, logs what each checked; each must have
    seen at least one complete answer."""
    for t in queries:
        t.stop_flag.set()
    for t in queries:
        t.join(30)
    for q in queries:
        h.log(f"{q.node.name}: {q.complete} complete and {q.partial} partial "
              f"answers checked, {q.errors} errors")
        chk.check(q.complete > 0, f"{q.node.name}: no complete answer to check")
