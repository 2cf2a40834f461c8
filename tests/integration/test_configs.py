#!/usr/bin/env python3
"""Configs and process lifecycle.

Checked: every configs/*.ini starts a node (ports overridden to free ones,
storage to a temp dir) that answers ping and stops on SIGTERM with exit 0;
`cairn-node --help` exits 0 and lists cairn.tcp.port; unknown flags and bad
option values fail with a non-zero exit; SIGTERM while clients are loading
the node exits 0 within 5 s.
"""

import glob
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def check_config_files(args, chk):
    files = sorted(glob.glob(os.path.join(args.source_dir, "configs", "*.ini")))
    chk.check(len(files) >= 1, f"no configs/*.ini found in {args.source_dir}")
    chk.check(any(os.path.basename(f) == "single.ini" for f in files),
              "configs/single.ini is missing")
    for i, path in enumerate(files):
        name = os.path.basename(path)
        node = h.Node(args.bin_dir, args.source_dir, name=f"cfg{i}", config=path,
                      base_args=False, keep=args.keep)
        try:
            node.start()
            try:
                # Cluster configs may name peers that are not running; the
                # node must still come up and answer ping.
                r = node.wait_ready(30, want_status=None)
                chk.check(r.get("ok") is True and r.get("node") == f"cfg{i}",
                          f"{name}: ping {r}")
                if r.get("status") != "ready":
                    try:
                        r = node.wait_ready(15, want_status="ready")
                    except h.TestFailure as e:
                        chk.note(f"{name}: answers ping but status is not 'ready': {e}")
                h.log(f"{name}: ping ok ({r.get('status')})")
                code, took = node.terminate(10)
                chk.check(code == 0, f"{name}: SIGTERM exit code {code} after {took:.1f}s")
            except h.TestFailure as e:
                chk.check(False, f"{name}: {e}")
                node.dump_log(60)
        finally:
            node.cleanup()


def check_help_and_flags(args, chk):
    binary = os.path.join(args.bin_dir, "cairn-node")
    r = h.run([binary, "--help"], timeout=20)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    chk.check(r.returncode == 0, f"--help: exit code {r.returncode}")
    # node_config.hpp: "`--help` lists every option with its default."
    if chk.check("cairn.tcp.port" in out,
                 f"--help does not list cairn.tcp.port (output: {out.strip()[:600]!r})"):
        for opt in ["cairn.http.port", "cairn.storage.path", "cairn.tcp.max-line"]:
            chk.check(opt in out, f"--help does not list {opt}")

    tmp = h.Node(args.bin_dir, args.source_dir, name="flags")
    try:
        base = [binary, f"--config-file={tmp.config}",
                f"--cairn.tcp.port={tmp.tcp_port}", f"--cairn.http.port={tmp.http_port}",
                f"--cairn.cluster.port={tmp.cluster_port}",
                f"--cairn.storage.path={tmp.storage}"]
        cases = [("unknown flag --cairn.no-such-option=1", base + ["--cairn.no-such-option=1"], True),
                 ("unknown flag --bogus", base + ["--bogus"], True),
                 ("bad value --cairn.tcp.port=notanumber", base + ["--cairn.tcp.port=notanumber"], True),
                 ("bad tier --cairn.tiers=[\"1x:5\"]", base + ['--cairn.tiers=["1x:5"]'], True),
                 # docs/configuration.md: an unreadable --config-file is an
                 # error (CAF 0.17 alone would ignore it).
                 ("missing config file", [binary, "--config-file=/nonexistent/cairn.ini"] + base[2:],
                  True)]
        for desc, cmd, hard in cases:
            r = h.run_bounded(cmd, timeout=10)
            out = (r.stdout + r.stderr).decode("utf-8", "replace").strip()
            last = out.splitlines()[-1][:160] if out else ""
            if r.returncode is None:
                msg = f"{desc}: the node kept running (expected an error exit)"
            elif r.returncode == 0:
                msg = f"{desc}: exit code 0 (expected failure); output: {out[:300]}"
            elif not out:
                msg = f"{desc}: fails without a message"
            else:
                msg = None
            if msg and hard:
                chk.check(False, msg)
            elif msg:
                chk.note(msg)
            h.log(f"{desc}: exit {r.returncode}: {last}")
    finally:
        tmp.cleanup()


def check_sigterm_under_load(args, chk):
    with h.Node(args.bin_dir, args.source_dir, name="load", keep=args.keep) as node:
        stop = threading.Event()
        sent = [0]

        def faf():
            try:
                with node.client(timeout=10) as c:
                    i = 0
                    while not stop.is_set():
                        now = h.now_ms()
                        c.send_lines({"metric": f"load.m{i % 7}", "ts": now - (j % 60000),
                                      "value": j % 100, "tags": {"s": str(j % 31)}}
                                     for j in range(i, i + 2000))
                        i += 2000
                        sent[0] += 2000
            except OSError:
                pass  # the node goes away under us: expected

        def acked():
            try:
                with node.client(timeout=10) as c:
                    while not stop.is_set():
                        now = h.now_ms()
                        c.request({"op": "ingest", "events": [
                            {"metric": "load.acked", "ts": now - j, "value": j}
                            for j in range(500)]}, timeout=10)
            except (OSError, TimeoutError, ValueError):
                pass

        def queries():
            try:
                with node.client(timeout=10) as c:
                    while not stop.is_set():
                        c.request({"op": "query", "metric": "load.m1", "step": "10s",
                                   "aggs": ["count", "p99"], "group_by": ["s"]}, timeout=10)
            except (OSError, TimeoutError, ValueError):
                pass

        threads = [threading.Thread(target=f, daemon=True) for f in (faf, faf, acked, queries)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        chk.check(node.alive(), "node died under load")
        code, took = node.terminate(5)
        stop.set()
        h.log(f"SIGTERM under load (~{sent[0]} fire-and-forget events sent): exit code "
              f"{code} after {took:.2f}s")
        chk.check(code == 0, f"SIGTERM under load: exit code {code} (expected 0 within 5 s; "
                             f"took {took:.2f}s)")
        for t in threads:
            t.join(5)
        if code != 0:
            node.dump_log(60)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_configs")
    for name, fn in [("config files", check_config_files),
                     ("--help and bad flags", check_help_and_flags),
                     ("SIGTERM under load", check_sigterm_under_load)]:
        h.log(f"-- {name}")
        try:
            fn(args, chk)
        except (h.TestFailure, OSError) as e:
            chk.check(False, f"{name}: {e!r}")
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
