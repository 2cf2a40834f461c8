"""Chaos test of a 3-node cluster.

1. Ingest continuously through every node (each request with an idempotency
   key; a request that fails is retried with the same key through another
   node, so "acknowledged" is exact).
2. SIGKILL one node during ingest: ingest keeps being acknowledged through
   the other two (writes for the dead node's partitions go to the hinted-
   handoff queues); queries come back "partial" naming exactly the dead
   node's partitions.
3. Restart it: the hints drain and every query from every node equals the
   reference over all acknowledged events.
4. SIGSTOP another node: it is seen as unreachable within the configured
   connection timeout (+ slack) and its breaker opens; ingest is still
   acknowledged. SIGCONT: it is healed (up, breaker closed, hints drained)
   and every query equals the reference again.
"""

import os
import random
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster, make_events, compare_everything  # noqa: E402

SEED = 777
CONNECTION_TIMEOUT_S = 2.0


class Ingest:
    """Background ingest through the live nodes; records what was acked."""

    def __init__(self, cluster, rng, t0, chk, name):
        self.name = name
        self.cluster, self.rng, self.t0, self.chk = cluster, rng, t0, chk
        self.acked = []
        self.lock = threading.Lock()
        self.stop_flag = threading.Event()
        self.requests = 0
        self.retries = 0
        self.max_latency = 0.0
        self.latencies = []
        self.avoid = set()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.seq = 0

    def targets(self):
        return [n for n in self.cluster.nodes
                if n.alive() and n.name not in self.avoid]

    def send(self, batch, key):
        for attempt in range(20):
            nodes = self.targets()
            node = nodes[(self.seq + attempt) % len(nodes)]
            t = time.time()
            try:
                with node.client(15) as c:
                    r = c.request({"op": "ingest", "events": batch,
                                   "idempotency_key": key}, 15)
            except (OSError, TimeoutError, ValueError) as e:
                r = {"error": repr(e)}
            took = time.time() - t
            if r.get("ok") is True and r.get("accepted") == len(batch):
                with self.lock:
                    self.acked.extend(batch)
                    self.latencies.append(took)
                    self.max_latency = max(self.max_latency, took)
                return True
            self.retries += 1
            time.sleep(0.05)
        self.chk.check(False, f"batch {key} never acknowledged")
        return False

    def run(self):
        while not self.stop_flag.is_set():
            self.seq += 1
            batch = make_events(self.rng, self.t0, 200)
            self.send(batch, f"chaos-{self.name}-{self.seq}")
            self.requests += 1
            time.sleep(0.01)

    def start(self):
        self.thread.start()

    def stop(self):
        self.stop_flag.set()
        self.thread.join(60)

    def count(self):
        with self.lock:
            return len(self.acked)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_cluster_chaos")
    rng = random.Random(SEED)
    cluster = Cluster(args, n=3, partitions=8,
                      connection_timeout=f"{int(CONNECTION_TIMEOUT_S)}s")
    try:
        cluster.start()
        n1, n2, n3 = cluster.nodes
        t0 = h.now_ms()
        ing = Ingest(cluster, rng, t0, chk, "a")
        ing.start()
        time.sleep(2)
        h.log(f"phase 1: {ing.count()} events acknowledged by 3 nodes")

        # -- SIGKILL n3 during ingest ------------------------------------------
        owned3 = cluster.owned(n3.name)
        n3.kill()
        before = ing.count()
        time.sleep(4)
        after = ing.count()
        h.log(f"phase 2: n3 killed; {after - before} events acknowledged since "
              f"(max ack latency so far {ing.max_latency:.2f}s)")
        chk.check(after - before >= 2000,
                  f"ingest stalled while n3 is dead: {after - before} events in 4 s")
        for node in (n1, n2):
            with node.client(30) as c:
                r = c.request({"op": "query", "metric": "cpu", "from": "-15m",
                               "aggs": ["count"], "step": "60s"}, 30)
            chk.check(r.get("ok") is True and r.get("partial") is True,
                      f"{node.name}: query while n3 is dead not partial: {str(r)[:200]}")
            chk.check(r.get("missing_partitions") == owned3,
                      f"{node.name}: missing {r.get('missing_partitions')} != {owned3}")
        v = cluster.cluster_view(n1)
        m3 = cluster.member(v, n3.name)
        chk.check(m3.get("status") == "unreachable", f"n1 sees n3 as {m3.get('status')}")
        chk.check(m3.get("hints", {}).get("stored", 0) > 0, f"no hints stored for n3: {m3}")

        # -- restart n3: hints drain, answers complete -------------------------
        n3.start()
        n3.wait_ready(60)
        time.sleep(2)
        ing.stop()
        h.log(f"phase 3: n3 restarted; ingest stopped at {ing.count()} acknowledged "
              f"events ({ing.retries} retries, max ack latency {ing.max_latency:.2f}s)")
        cluster.wait_members_up(60, hints_drained=True)
        ref = h.Reference(ing.acked)
        for node in cluster.nodes:
            compare_everything(chk, node, ref, t0, "after restart")
        delivered = sum(cluster.member(cluster.cluster_view(n), n3.name)
                        .get("hints", {}).get("delivered", 0) for n in (n1, n2))
        chk.check(delivered > 0, "no hints were delivered to n3")
        h.log(f"phase 3: {delivered} hints delivered to n3; answers compared")

        # -- SIGSTOP n2: unreachable within the connection timeout -------------
        ing2 = Ingest(cluster, rng, t0, chk, "b")
        ing2.avoid.add(n2.name)
        ing2.acked = []
        ing2.start()
        time.sleep(1)
        os.kill(n2.proc.pid, signal.SIGSTOP)
        frozen_at = time.time()

        def n2_open():
            m = cluster.member(cluster.cluster_view(n1), n2.name)
            return (m.get("status") == "unreachable"
                    and m.get("breaker", {}).get("state") in ("open", "half-open"))
        cluster.wait_until(n2_open, CONNECTION_TIMEOUT_S + 10, "n2 unreachable")
        detect = time.time() - frozen_at
        h.log(f"phase 4: frozen n2 seen unreachable, breaker open after {detect:.2f}s")
        chk.check(detect <= CONNECTION_TIMEOUT_S + 3.0,
                  f"frozen node detected after {detect:.2f}s "
                  f"(connection timeout {CONNECTION_TIMEOUT_S}s)")
        before = ing2.count()
        time.sleep(2)
        chk.check(ing2.count() - before >= 1000,
                  f"ingest stalled while n2 is frozen: {ing2.count() - before}")
        r = None
        with n1.client(30) as c:
            r = c.request({"op": "query", "metric": "cpu", "from": "-15m",
                           "aggs": ["count"], "step": "60s"}, 30)
        chk.check(r.get("partial") is True
                  and r.get("missing_partitions") == cluster.owned(n2.name),
                  f"query while n2 frozen: {str(r)[:200]}")
        os.kill(n2.proc.pid, signal.SIGCONT)
        time.sleep(1)
        ing2.stop()
        cluster.wait_members_up(60, hints_drained=True)
        h.log(f"phase 4: n2 thawed and healed; {ing2.count()} more events acknowledged")
        ref = h.Reference(ing.acked + ing2.acked)
        for node in cluster.nodes:
            compare_everything(chk, node, ref, t0, "after thaw")
        v = cluster.cluster_view(n1)
        b = cluster.member(v, n2.name).get("breaker", {})
        chk.check(b.get("opened", 0) >= 1 and b.get("closed", 0) >= 1,
                  f"n1's breaker for n2 did not open and close: {b}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk, 60)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
