#!/usr/bin/env python3
"""Corruption on disk, detected by Cairn's own checksums (issue #3).

The bytes are flipped in LevelDB's write-ahead log (*.log) while the node is
down, and the LevelDB fragment CRC is recomputed (tests/integration/
leveldb_log.py), so LevelDB replays the record and hands Cairn the corrupted
value: only Cairn's CRC-32C (docs/storage-format.md) can catch it. The data
directory is fresh and small, so everything written is still in the log.

1. Snapshot fallback: snapshots every few thousand events (keep=2), more
   events after the newest, SIGKILL; flip a byte inside the projection of the
   newest snapshot of one partition. The node must start, log
   "partition P: snapshot covering seq S rejected (bad_checksum); falling back
   to the previous snapshot", report the older snapshot in stats, and answer
   every query exactly like the reference (nothing lost: the journal after the
   older snapshot is kept). A graceful restart afterwards is clean too.
2. Corrupt journal record: no snapshots; flip a byte in the body of one
   record (not the last) of one partition. The node must exit with code 3
   and log "partition P: corrupt journal record at seq S (bad_checksum)";
   with --cairn.storage.skip-corrupt=true it starts, and the queries equal
   the reference minus exactly the events of that record.
"""

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as H  # noqa: E402
import leveldb_log as L  # noqa: E402
import persistence_helpers as P  # noqa: E402

METRIC = "fb.m"
HOSTS = [f"h{i}" for i in range(12)]


class Gen:
    def __init__(self, base):
        self.base = base
        self.n = 0
        self.rng = random.Random(5)

    def batch(self, n):
        evs = []
        for _ in range(n):
            self.n += 1
            evs.append({"metric": METRIC, "ts": self.base + (self.n * 7) % 200000,
                        "value": float(self.n), "tags": {"host": self.rng.choice(HOSTS)}})
        return evs


def ingest(chk, node, gen, ref, batches, size, prefix):
    with node.client(60.0) as c:
        reqs = []
        evss = []
        for i in range(batches):
            evs = gen.batch(size)
            evss.append(evs)
            reqs.append({"op": "ingest", "events": evs, "idempotency_key": f"{prefix}{i}"})
        replies = c.pipeline(reqs, window=8, timeout=60)
        for evs, r in zip(evss, replies):
            if chk.check(r.get("ok") is True and r.get("accepted") == len(evs),
                         f"ingest failed: {str(r)[:200]}"):
                ref.extend(evs)


def verify(chk, node, ref, base, label):
    frm, to = base - 1000, base + 201000
    with node.client(60.0) as c:
        diffs = P.compare_queries(chk, c, ref, METRIC, frm, to,
                                  [("per-host 1s", None, ["host"], 1000),
                                   ("all 60s", None, None, 60000)], label)
    H.log(f"  verify [{label}]: {len(ref.events)} reference events, {diffs} differences")
    return diffs


def partition_stats(node):
    return {p["id"]: p for p in P.stats(node).get("partitions", [])}


def snapshot_fallback(args, chk):
    H.log("== 1. corrupt newest snapshot -> fallback to the previous one")
    base = (H.now_ms() // 1000) * 1000 - 240000
    node = H.Node(args.bin_dir, args.source_dir, name="snapfb", partitions=4, keep=args.keep,
                  extra_args=["--cairn.snapshot.every-events=3000",
                              "--cairn.snapshot.interval=1000h", "--cairn.snapshot.keep=2"])
    gen, ref = Gen(base), P.ExactRef()
    ok = False
    try:
        P.start(node)
        node.wait_ready()
        # ~10000 events per partition: three snapshots each, two kept.
        ingest(chk, node, gen, ref, 80, 500, "a")
        time.sleep(0.5)  # let the snapshot writes complete
        before = partition_stats(node)
        # More events after the newest snapshot (below the threshold).
        ingest(chk, node, gen, ref, 4, 500, "b")
        P.sigkill(node)
        tables = L.table_files(node.storage)
        chk.require(not tables, f"LevelDB already compacted into tables {tables}: "
                                f"the values are not in the log any more")
        snaps = L.cairn_entries(node.storage, "s")
        by_part = {}
        for (p, seq), e in snaps.items():
            by_part.setdefault(p, []).append(seq)
        H.log(f"  live snapshots in the log: { {p: sorted(s) for p, s in sorted(by_part.items())} }")
        cands = [p for p, s in by_part.items() if len(s) >= 2]
        chk.require(cands, f"no partition has two snapshots: {by_part}")
        p = sorted(cands)[0]
        newest, older = sorted(by_part[p])[-1], sorted(by_part[p])[-2]
        chk.check(before[p]["snapshot_seq"] == newest,
                  f"stats said snapshot_seq {before[p]['snapshot_seq']} for partition {p}, "
                  f"the log's newest is {newest}")
        entry = snaps[(p, newest)]
        val = entry.value
        chk.require(L.snapshot_covered_seq(val) == newest, "snapshot header mismatch")
        proj_len = int.from_bytes(val[25:33], "little")
        pos = 33 + proj_len // 2
        log_path = entry.record.path
        chk.check(L.verify_fragment_crcs(log_path) == 0, "log CRCs bad before patching")
        off = L.flip_value_byte(entry, pos)
        chk.check(L.verify_fragment_crcs(log_path) == 0, "log CRCs bad after patching")
        H.log(f"  flipped byte {pos} of {len(val)} of snapshot (partition {p}, seq {newest}) "
              f"at {os.path.basename(log_path)}+{off}; previous snapshot covers {older}")
        after = L.cairn_entries(node.storage, "s")[(p, newest)].value
        chk.check(after != val and len(after) == len(val), "the value did not change on disk")

        P.start(node)
        took, seen = P.wait_ready_observing(node, timeout=60)
        line = (f"partition {p}: snapshot covering seq {newest} rejected (bad_checksum); "
                f"falling back to the previous snapshot")
        chk.check(line in node.log_text(), f"log lacks the line {line!r}")
        st = partition_stats(node)
        chk.check(st[p]["snapshot_seq"] == older,
                  f"partition {p} recovered from snapshot {st[p]['snapshot_seq']}, expected {older}")
        chk.check(st[p]["replayed_events"] > 0, f"partition {p} replayed nothing after fallback")
        chk.check(st[p]["journal_seq"] > newest,
                  f"partition {p} journal_seq {st[p]['journal_seq']} <= {newest}")
        H.log(f"  ready in {took:.3f}s; partition {p}: {st[p]}")
        verify(chk, node, ref, base, "after fallback")
        # The node keeps working and a clean restart is clean.
        ingest(chk, node, gen, ref, 4, 500, "c")
        node.stop(timeout=30)
        P.start(node)
        P.wait_ready_observing(node)
        s = P.stats(node)
        chk.check(s["recovery"]["replayed_events"] == 0,
                  f"graceful restart after fallback replayed {s['recovery']}")
        verify(chk, node, ref, base, "after fallback + graceful restart")
        node.stop(timeout=30)
        ok = not chk.failures
    finally:
        if not ok:
            node.dump_log(80)
        node.cleanup()


def corrupt_journal(args, chk):
    H.log("== 2. corrupt journal record -> refuse to start (exit 3), or skip it")
    base = (H.now_ms() // 1000) * 1000 - 240000
    node = H.Node(args.bin_dir, args.source_dir, name="jcorrupt", partitions=4, keep=args.keep,
                  extra_args=["--cairn.snapshot.every-events=1000000000",
                              "--cairn.snapshot.interval=1000h"])
    gen, ref = Gen(base), P.ExactRef()
    ok = False
    try:
        P.start(node)
        node.wait_ready()
        ingest(chk, node, gen, ref, 40, 250, "j")
        P.sigkill(node)
        chk.require(not L.table_files(node.storage), "LevelDB compacted into tables already")
        recs = L.cairn_entries(node.storage, "j")
        chk.require(not L.cairn_entries(node.storage, "s"), "unexpected snapshots")
        p = 1
        seqs = sorted(s for (q, s) in recs if q == p)
        chk.require(len(seqs) >= 3, f"partition {p} has only {len(seqs)} records")
        seq = seqs[len(seqs) // 2]
        entry = recs[(p, seq)]
        # Records name series through a dictionary (storage-format.md): the
        # records after the corrupt one that use series it defined are lost
        # with it, up to the next dictionary reset.
        values = [recs[(p, s)].value for s in seqs]
        _, skipped = L.replay_partition(values, skip={len(seqs) // 2})
        all_decoded, none = L.replay_partition(values)
        chk.require(not none and len(all_decoded) == len(seqs),
                    f"records of partition {p} do not decode: {none}")
        evs = [e for i, events in all_decoded if i in skipped for e in events]
        lost_values = {v for _, _, v in evs}
        H.log(f"  corrupting partition {p} seq {seq} of {seqs[0]}..{seqs[-1]} "
              f"({len(evs)} events lost with it in {len(skipped)} records)")
        L.flip_value_byte(entry, len(entry.value) // 2)

        P.start(node)
        code = P.wait_exit(node, timeout=60)
        text = node.log_text()
        line = f"partition {p}: corrupt journal record at seq {seq} (bad_checksum)"
        chk.check(code == 3, f"node exit code {code}, expected 3 (refuse to start)")
        chk.check(line in text, f"log lacks {line!r}")
        chk.check("skip-corrupt" in text, "the refusal does not mention skip-corrupt")

        node.extra_args.append("--cairn.storage.skip-corrupt=true")
        P.start(node)
        took, seen = P.wait_ready_observing(node, timeout=60)
        chk.check(f"{line}; skipped" in node.log_text(),
                  "the skip-corrupt start does not log the skipped record")
        chk.check(P.stats(node)["recovery"]["replayed_events"] == len(ref.events) - len(evs),
                  "replayed_events != all events minus the skipped records'")
        kept = P.ExactRef()
        kept.events = [e for e in ref.events if e[3] not in lost_values]
        chk.check(len(ref.events) - len(kept.events) == len(evs),
                  "reference subtraction mismatch")
        verify(chk, node, kept, base, "skip-corrupt: reference minus the corrupt record")
        # A graceful stop snapshots past the corrupt record: a normal start works again.
        node.stop(timeout=30)
        node.extra_args.remove("--cairn.storage.skip-corrupt=true")
        P.start(node)
        P.wait_ready_observing(node, timeout=60)
        verify(chk, node, kept, base, "normal start after the snapshot covering it")
        node.stop(timeout=30)
        ok = not chk.failures
    finally:
        if not ok:
            node.dump_log(80)
        node.cleanup()


def main():
    args = H.parse_args(__doc__)
    chk = H.Checker("snapshot fallback / corrupt journal")
    t0 = time.time()
    for fn in (snapshot_fallback, corrupt_journal):
        try:
            fn(args, chk)
        except H.TestFailure as e:
            chk.check(False, f"{fn.__name__}: {e}")
    H.log(f"elapsed {time.time() - t0:.1f}s")
    return chk.summary()


if __name__ == "__main__":
    H.main_wrapper(main)
