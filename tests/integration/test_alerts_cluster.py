#!/usr/bin/env python3
"""Alerting in a 3-node cluster (docs/alerting.md, "Cluster").

Phases:
  R. replication: a rule created on one node is listed by every node with
     the same version; an update on another node reaches all of them; two
     creates of one name on two nodes at once end as one rule everywhere
     (the write of the member whose name sorts last when both succeeded).
  W. cluster-wide data: a rule whose only series is stored on another node
     than the rule's owner fires (the owner evaluates buckets of every
     node), once.
  P. kill -9 of the owner while pending: another member takes over the
     episode (same pending start) and fires once, `for` after that start;
     rules created and deleted while the owner is down reach it when it
     returns, and it takes its rules back.
  F. kill -9 of the owner while firing: no new firing notification from the
     next owner; after the data recovers exactly one resolved notification.
  U. kill -9 of the owner while its firing notification cannot be
     delivered (the receiver answers 500): the next owner sends it again
     under the same idempotency key once the receiver recovers, without
     waiting for the dead owner; the returning owner's re-send carries the
     same key.
  C. every restarted member lists the same rules (names and versions) and
     the same instance state as the others.
  K. rule log compaction: 300 updates of one rule shrink every member's
     rule log back to about one event per rule; a member killed -9 and
     restarted after that recovers the same rules and instance states.

The receiver (tests/integration/webhook_receiver.py) counts distinct
idempotency keys: a retry or a re-send of one notification carries its key,
a second firing of one episode would carry a new one.
"""

import os
import re
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402
from cluster_harness import Cluster  # noqa: E402
from webhook_receiver import Receiver  # noqa: E402
import alert_feeder  # noqa: E402
from alert_feeder import Feeder, keys_by_status  # noqa: E402


def rule(name, metric, rx, **kw):
    """alert_feeder.rule with max instead of avg."""
    return alert_feeder.rule(name, metric, rx, **{"agg": "max", **kw})




def req(node, obj, timeout=10):
    with node.client(timeout) as c:
        return c.request(obj, timeout)


def wait_for(pred, timeout, step=0.2):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except (OSError, TimeoutError, ValueError):
            pass
        time.sleep(step)
    return None


def rule_set(node):
    """name -> (version, threshold) as `node` lists its rules."""
    r = req(node, {"op": "alert.list"})
    if r.get("ok") is not True:
        return None
    return {x["name"]: (x["version"], x["threshold"]) for x in r["rules"]}


def instance(node, name):
    r = req(node, {"op": "alert.get", "name": name})
    if r.get("ok") is not True:
        return None, None
    inst = (r.get("instances") or [{}])[0]
    return r.get("owner"), inst


def alive(cluster):
    return [n for n in cluster.nodes if n.alive()]


def same_everywhere(cluster, nodes=None):
    """The rule set if every node in `nodes` (default: the alive ones)
    lists the same one, else None."""
    sets = [rule_set(n) for n in (nodes or alive(cluster))]
    if sets and all(s is not None and s == sets[0] for s in sets):
        return sets[0]
    return None


def applied(node):
    return req(node, {"op": "stats"}).get("events_applied", 0)


def restart(cluster, node):
    node.start()
    node.wait_ready(60)
    cluster.wait_members_up(60)


def phase_r(chk, cluster, rx):
    h.log("R: rules replicated to every member")
    n1, n2, n3 = cluster.nodes
    r = req(n1, {"op": "alert.create", "rule": rule("r-one", "r.m", rx)})
    chk.require(r.get("ok") is True and r["rule"]["version"] == 1, f"create: {r}")
    got = wait_for(lambda: (same_everywhere(cluster) or {}).get("r-one"), 5)
    chk.check(got == (1, 100), f"r-one on every node: {got}")
    r = req(n3, {"op": "alert.update", "rule": rule("r-one", "r.m", rx, threshold=7)})
    chk.check(r.get("ok") is True and r["rule"]["version"] == 2, f"update on n3: {r}")
    got = wait_for(lambda: (same_everywhere(cluster) or {}).get("r-one") == (2, 7), 5)
    chk.check(got, f"update reached every node: {[rule_set(n) for n in cluster.nodes]}")
    r = req(n2, {"op": "alert.create", "rule": rule("r-one", "r.m", rx)})
    chk.check(h.is_error(r, "rule_exists"), f"create of a replicated rule: {r}")
    # Two creates of one name at once, on the first and the last member.
    replies = {}

    def create(node, threshold):
        replies[node.name] = req(node, {"op": "alert.create", "rule": rule(
            "r-race", "r.m", rx, threshold=threshold)})
    ts = [threading.Thread(target=create, args=(n, t))
          for n, t in ((n1, 11), (n3, 33))]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    ok = sorted(name for name, r in replies.items() if r.get("ok") is True)
    chk.check(ok, f"at least one create succeeded: {replies}")
    final = wait_for(lambda: (same_everywhere(cluster) or {}).get("r-race"), 5)
    chk.check(final is not None, f"r-race converged: {[rule_set(n) for n in cluster.nodes]}")
    if final is not None and ok:
        # Both succeeded: equal clocks, the later member name wins.
        want = 33 if n3.name in ok else 11
        chk.check(final[1] == want, f"r-race winner: {final} (creates ok on {ok})")
        h.log(f"  concurrent creates ok on {ok}; every node holds threshold {final[1]}")
    for name in ("r-one", "r-race"):
        r = req(n2, {"op": "alert.delete", "name": name})
        chk.check(r.get("ok") is True, f"delete {name} on n2: {r}")
    gone = wait_for(lambda: same_everywhere(cluster) == {}, 5)
    chk.check(gone, f"deletes reached every node: {[rule_set(n) for n in cluster.nodes]}")


def phase_w(chk, cluster, rx):
    h.log("W: the owner evaluates data stored on another node")
    n1 = cluster.nodes[0]
    r = req(n1, {"op": "alert.create", "rule": rule("w-hot", "w.hot", rx)})
    chk.require(r.get("ok") is True, f"create w-hot: {r}")
    owner, _ = instance(n1, "w-hot")
    chk.require(owner in [n.name for n in cluster.nodes], f"owner of w-hot: {owner}")
    ownernode = cluster.by_name(owner)
    # A series whose events the owner does not store.
    key = None
    for i in range(30):
        before = applied(ownernode)
        req(n1, {"op": "ingest", "events": [{"metric": "w.probe", "ts": h.now_ms(),
                                             "value": 1, "tags": {"k": f"h{i}"}}]})
        if applied(ownernode) == before:
            key = f"h{i}"
            break
    chk.require(key is not None, f"no series stored away from {owner} among 30")
    h.log(f"  w-hot owned by {owner}; series k={key} stored elsewhere")
    deadline = time.time() + 8
    while time.time() < deadline and not keys_by_status(rx, "w-hot")["firing"]:
        req(n1, {"op": "ingest", "events": [{"metric": "w.hot", "ts": h.now_ms(),
                                             "value": 500, "tags": {"k": key}}]})
        time.sleep(0.1)
    k = keys_by_status(rx, "w-hot")
    chk.check(len(k["firing"]) == 1, f"w-hot fired once from remote data: {k}")
    got = rx.delivered("w-hot")
    if got:
        chk.check(got[0][2]["annotations"].get("summary") == "w-hot is 500",
                  f"w-hot value: {got[0][2]}")
    _, inst = instance(cluster.nodes[1], "w-hot")
    chk.check(inst and inst.get("state") == "firing", f"w-hot state on n2: {inst}")
    req(n1, {"op": "alert.delete", "name": "w-hot"})


SERIES = [f"s{i}" for i in range(12)]


def feed_all(feeders, metric, value):
    for i, k in enumerate(SERIES):
        feeders[i % len(feeders)].set(metric, value, {"k": k})


def phase_p(chk, cluster, rx, feeders):
    h.log("P: kill -9 of the owner while pending")
    n1 = cluster.nodes[0]
    r = req(n1, {"op": "alert.create", "rule": rule("fo", "fo.v", rx, **{"for": "5s"})})
    chk.require(r.get("ok") is True, f"create fo: {r}")
    r = req(n1, {"op": "alert.create", "rule": rule("doomed", "x.v", rx)})
    chk.require(r.get("ok") is True, f"create doomed: {r}")
    chk.require(wait_for(lambda: "fo" in (same_everywhere(cluster) or {}), 5),
                "fo on every node")
    owners = {instance(n, "fo")[0] for n in cluster.nodes}
    chk.check(len(owners) == 1, f"every node names one owner of fo: {owners}")
    owner = owners.pop()
    feed_all(feeders, "fo.v", 500)
    others = [n for n in cluster.nodes if n.name != owner]
    pending = wait_for(lambda: (lambda i: i if i and i.get("state") == "pending" else None)(
        instance(others[0], "fo")[1]), 8)
    chk.require(pending is not None, "fo pending (seen on a member that does not own it)")
    h.log(f"  fo pending on {owner} since {pending['active_since']}; kill -9 {owner}")
    victim = cluster.by_name(owner)
    victim.kill()
    killed_at = time.time()
    # While it is down: a rule created, another deleted.
    r = req(others[0], {"op": "alert.create", "rule": rule("late", "late.v", rx)})
    chk.check(r.get("ok") is True, f"create late while {owner} is down: {r}")
    r = req(others[1], {"op": "alert.delete", "name": "doomed"})
    chk.check(r.get("ok") is True, f"delete doomed while {owner} is down: {r}")
    fired = wait_for(lambda: keys_by_status(rx, "fo")["firing"], 15)
    chk.check(fired, "fo fired after the owner died")
    h.log(f"  fired {time.time() - killed_at:.1f} s after the kill")
    new_owner, inst = instance(others[0], "fo")
    chk.check(new_owner in [n.name for n in others], f"fo moved: owner {new_owner}")
    if inst:
        chk.check(inst.get("active_since") == pending["active_since"],
                  f"the new owner continued the episode: {inst} vs {pending}")
        since = inst.get("fired_at", 0) - pending["active_since"]
        chk.check(5000 <= since < 12000, f"fired `for` after the pending start: {since} ms")
    time.sleep(2)
    chk.check(len(keys_by_status(rx, "fo")["firing"]) == 1,
              f"one firing: {rx.delivered('fo')}")
    h.log(f"  restart {owner}")
    restart(cluster, victim)
    caught = wait_for(lambda: same_everywhere(cluster, cluster.nodes), 10)
    chk.check(caught and "late" in caught and "doomed" not in caught,
              f"{owner} caught up with the rules changed while it was down: "
              f"{[rule_set(n) for n in cluster.nodes]}")
    back = wait_for(lambda: instance(victim, "fo")[0] == owner
                    and instance(others[0], "fo")[0] == owner, 10)
    chk.check(back, f"{owner} owns fo again: {[instance(n, 'fo')[0] for n in cluster.nodes]}")
    _, inst = instance(victim, "fo")
    chk.check(inst and inst.get("state") == "firing"
              and inst.get("active_since") == pending["active_since"],
              f"{owner} knows fo is firing: {inst}")
    time.sleep(2)
    chk.check(len(keys_by_status(rx, "fo")["firing"]) == 1,
              f"still one firing after the owner returned: {rx.delivered('fo')}")
    return pending["active_since"]


def phase_f(chk, cluster, rx, feeders, active_since):
    h.log("F: kill -9 of the owner while firing, then the data recovers")
    owner, inst = instance(cluster.nodes[0], "fo")
    chk.require(inst and inst.get("state") == "firing", f"fo firing: {inst}")
    victim = cluster.by_name(owner)
    h.log(f"  kill -9 {owner} (firing)")
    victim.kill()
    others = [n for n in cluster.nodes if n.name != owner]
    moved = wait_for(lambda: instance(others[0], "fo")[0] != owner, 8)
    chk.check(moved, "fo moved off the dead owner")
    time.sleep(3)
    k = keys_by_status(rx, "fo")
    chk.check(len(k["firing"]) == 1 and not k["resolved"],
              f"no new firing after the failover: {rx.delivered('fo')}")
    feed_all(feeders, "fo.v", 1)
    resolved = wait_for(lambda: keys_by_status(rx, "fo")["resolved"], 10)
    chk.check(resolved, "fo resolved after the data recovered")
    time.sleep(2)
    k = keys_by_status(rx, "fo")
    chk.check(len(k["firing"]) == 1 and len(k["resolved"]) == 1,
              f"one firing, one resolved: {k}")
    if rx.delivered("fo"):
        starts = {a["startsAt"] for _, _, a, _ in rx.delivered("fo")}
        chk.check(len(starts) == 1, f"one episode (startsAt): {starts}")
    # Copies of one notification (same key) are allowed; a bounded number.
    posts = [s for s, _, _, _ in rx.delivered("fo")]
    h.log(f"  fo: {posts.count('firing')} firing and {posts.count('resolved')} "
          f"resolved deliveries through two kills")
    chk.check(posts.count("firing") <= 2 and posts.count("resolved") <= 2,
              f"at most one repeat of a notification: {posts}")
    h.log(f"  restart {owner}")
    restart(cluster, victim)
    return victim


def phase_u(chk, cluster, feeders):
    h.log("U: kill -9 of the owner while its notification is undeliverable")
    rx2 = Receiver().start()
    rx2.mode = "fail"
    try:
        n1 = cluster.nodes[0]
        r = req(n1, {"op": "alert.create", "rule": rule("un", "un.v", rx2)})
        chk.require(r.get("ok") is True, f"create un: {r}")
        chk.require(wait_for(lambda: "un" in (same_everywhere(cluster) or {}), 5),
                    "un on every node")
        owner, _ = instance(n1, "un")
        feed_all(feeders, "un.v", 500)

        def tried():
            with rx2.lock:
                return [a["key"] for a in rx2.attempts
                        if a["body"] and a["body"]["alerts"][0]["labels"]["alertname"] == "un"]
        keys = wait_for(tried, 10)
        chk.require(keys, "the owner tried to deliver un's firing notification")
        victim = cluster.by_name(owner)
        h.log(f"  un firing, receiver failing; kill -9 {owner}")
        victim.kill()
        others = [n for n in cluster.nodes if n.name != owner]
        moved = wait_for(lambda: instance(others[0], "un")[0] != owner, 8)
        chk.check(moved, "un moved off the dead owner")
        rx2.mode = "ok"
        got = wait_for(lambda: keys_by_status(rx2, "un")["firing"], 15)
        chk.check(got == {keys[0]}, f"the next owner delivered the dead owner's "
                                    f"notification under its key: {got} vs {keys[0]}")
        posts_before = len(rx2.delivered("un"))
        h.log(f"  restart {owner}")
        restart(cluster, victim)
        time.sleep(3)
        k = keys_by_status(rx2, "un")
        chk.check(k["firing"] == {keys[0]} and not k["resolved"],
                  f"one firing key after the owner returned: {k}")
        h.log(f"  un firing: {posts_before} delivery before the owner returned, "
              f"{len(rx2.delivered('un'))} after (same key)")
        chk.check(len(rx2.delivered("un")) <= 2, f"un: {rx2.delivered('un')}")
        feed_all(feeders, "un.v", 1)
        chk.check(wait_for(lambda: keys_by_status(rx2, "un")["resolved"], 10),
                  "un resolved")
        time.sleep(1.5)
        k = keys_by_status(rx2, "un")
        chk.check(len(k["firing"]) == 1 and len(k["resolved"]) == 1, f"un keys: {k}")
        feed_all(feeders, "un.v", None)
        req(n1, {"op": "alert.delete", "name": "un"})
    finally:
        rx2.stop()


def phase_c(chk, cluster, victim):
    h.log("C: the restarted members agree with the others")
    same = wait_for(lambda: same_everywhere(cluster, cluster.nodes), 10)
    chk.check(same and set(same) == {"fo", "late"},
              f"same rules everywhere: {[rule_set(n) for n in cluster.nodes]}")

    def states():
        out = set()
        for n in cluster.nodes:
            _, inst = instance(n, "fo")
            out.add((inst or {}).get("state"))
        return out == {"resolved"}
    chk.check(wait_for(states, 10), "fo resolved on every member: "
              f"{[instance(n, 'fo') for n in cluster.nodes]}")
    owned = 0
    for n in cluster.nodes:
        text = urllib.request.urlopen(f"http://127.0.0.1:{n.http_port}/metrics",
                                      timeout=10).read().decode()
        for line in text.splitlines():
            if line.startswith("cairn_alert_rules_owned"):
                owned += int(float(line.split()[-1]))
        chk.check("cairn_alert_rule_events" in text, f"{n.name}: rule log gauge")
    chk.check(owned == 2, f"each of the 2 rules is owned by exactly one member: {owned}")


def rule_events(node):
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/metrics",
                                  timeout=10).read().decode()
    for line in text.splitlines():
        if line.startswith("cairn_alert_rule_events"):
            return int(float(line.split()[-1]))
    return None


def phase_k(chk, cluster, rx):
    h.log("K: rule log compaction")
    n1, n2, n3 = cluster.nodes
    before = {n.name: rule_events(n) for n in cluster.nodes}
    with n2.client(30) as c:
        replies = c.pipeline([{"op": "alert.update", "rule": rule(
            "late", "late.v", rx, threshold=1000 + i)} for i in range(300)], 16, 30)
    chk.check(all(r.get("ok") is True for r in replies),
              f"300 updates: {[r for r in replies if r.get('ok') is not True][:3]}")
    version = replies[-1].get("rule", {}).get("version")
    same = wait_for(lambda: (lambda x: x if x and x.get("late", (0,))[0] == version
                             else None)(same_everywhere(cluster, cluster.nodes)), 10)
    chk.check(same, f"every member has version {version} of late: "
                    f"{[rule_set(n) for n in cluster.nodes]}")
    after = {n.name: rule_events(n) for n in cluster.nodes}
    h.log(f"  rule log events before {before}, after 300 updates {after}")
    # Rule names known (tombstones included) are fewer than 10 here.
    chk.check(all(v is not None and v < 2 * 10 + 100 for v in after.values()),
              f"every rule log compacted: {after}")
    states = {n.name: instance(n, "fo")[1] for n in cluster.nodes}
    n3.kill()
    restart(cluster, n3)
    # What it read from its own (compacted) store, before any peer spoke.
    restored = re.findall(r"alerting: (\d+) rules, (\d+) instances restored",
                          n3.log_text())
    chk.check(restored and restored[-1] == (str(len(same or {})), "1"),
              f"{n3.name} restored from its compacted store: {restored[-1:]}")
    got = wait_for(lambda: same_everywhere(cluster, cluster.nodes) == same, 10)
    chk.check(got, f"{n3.name} recovered the same rules after compaction: "
                   f"{rule_set(n3)} vs {same}")
    _, inst = instance(n3, "fo")
    want = states[n1.name] or {}
    chk.check(inst and inst.get("state") == want.get("state")
              and inst.get("active_since") == want.get("active_since")
              and inst.get("episode") == want.get("episode"),
              f"{n3.name} recovered fo's state: {inst} vs {want}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_alerts_cluster")
    rx = Receiver().start()
    cluster = Cluster(args, n=3, partitions=8, prefix="ac",
                      extra_args=["--cairn.alerts.retry-initial=50ms",
                                  "--cairn.alerts.retry-cap=400ms",
                                  "--cairn.alerts.max-attempts=1000",
                                  "--cairn.alerts.request-timeout=1s"])
    feeders = []
    try:
        cluster.start()
        phase_r(chk, cluster, rx)
        phase_w(chk, cluster, rx)
        feeders = [Feeder(n) for n in cluster.nodes]
        active_since = phase_p(chk, cluster, rx, feeders)
        victim = phase_f(chk, cluster, rx, feeders, active_since)
        phase_u(chk, cluster, feeders)
        phase_c(chk, cluster, victim)
        phase_k(chk, cluster, rx)
        chk.count(len(rx.delivered()))
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        for f in feeders:
            f.close()
        cluster.finish(chk)
        rx.stop()
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
