#!/usr/bin/env python3
"""Start-up errors (issue 9, items 4 and 5).

Port in use: with the NDJSON, HTTP or cluster port already taken, cairn-node
exits 1 within a few seconds with ONE line naming the option and the port
(`error: cannot listen on 127.0.0.1:P (cairn.tcp.port): Address already in
use`), never hangs.

Config errors: an unknown key, an unknown section, a value of the wrong type,
an out-of-range value in the INI file, and a mistyped or bad command-line
option each exit 2 with one line naming the key. The shipped configs still
load (test_configs starts every one of them; here each is parsed too).
"""

import glob
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402


def output_lines(r):
    text = (r.stdout + r.stderr).decode("utf-8", "replace")
    return [l for l in text.splitlines() if l.strip()]


def check_ports(args, chk):
    for option, attr in [("cairn.tcp.port", "tcp_port"), ("cairn.http.port", "http_port"),
                         ("cairn.cluster.port", "cluster_port")]:
        node = h.Node(args.bin_dir, args.source_dir, name="busy", keep=args.keep)
        holder = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            port = getattr(node, attr)
            holder.bind(("127.0.0.1", port))
            holder.listen(8)
            t0 = time.time()
            r = h.run_bounded(node.command(), timeout=15)
            took = time.time() - t0
            lines = output_lines(r)
            h.log(f"{option} in use: exit {r.returncode} after {took:.2f}s: {lines}")
            chk.check(r.returncode == 1, f"{option} in use: exit code {r.returncode} "
                                         f"(expected 1; None = still running after 15 s)")
            chk.check(took < 5, f"{option} in use: took {took:.1f}s to fail")
            chk.check(len(lines) == 1, f"{option} in use: expected one line, got {lines}")
            want = f"cannot listen on 127.0.0.1:{port} ({option}): Address already in use"
            chk.check(any(want in l for l in lines), f"{option} in use: no line with {want!r}")
        finally:
            holder.close()
            node.cleanup()


BAD_CONFIGS = [
    # (description, INI text, extra flags, text the one line must contain)
    ("unknown key", "[cairn]\nno-such-key = 1\n", [], "cairn.no-such-key"),
    ("unknown key in a sub-section", "[cairn.tcp]\nprot = 7411\n", [], "cairn.tcp.prot"),
    ("unknown section", "[cairn.nosuch]\na = 1\n", [], "[cairn.nosuch]"),
    ("unknown top-level section", "[nosuch]\na = 1\n", [], "[nosuch]"),
    ("negative count", "[cairn]\npartitions = -4\n", [], "cairn.partitions"),
    ("string for a port", "[cairn.tcp]\nport = \"abc\"\n", [], "cairn.tcp.port"),
    ("port out of range", "[cairn.tcp]\nport = 99999\n", [], "cairn.tcp.port"),
    ("zero partitions", "[cairn]\npartitions = 0\n", [], "cairn.partitions"),
    ("too many partitions", "[cairn]\npartitions = 100000\n", [], "cairn.partitions"),
    ("bad duration", "[cairn.tcp]\nidle-timeout = \"soon\"\n", [], "cairn.tcp.idle-timeout"),
    ("mistyped flag", "", ["--cairn.tcp.prot=7411"], "cairn.tcp.prot"),
    ("unknown flag", "", ["--bogus"], "bogus"),
    ("bad flag value", "", ["--cairn.tcp.port=abc"], "cairn.tcp.port"),
    ("flag out of range", "", ["--cairn.tcp.port=99999"], "cairn.tcp.port"),
    ("negative flag", "", ["--cairn.partitions=-4"], "cairn.partitions"),
    ("bad tier", "", ['--cairn.tiers=["1x:5"]'], "cairn.tiers"),
    ("zero parsers", "", ["--cairn.ingest.parsers=0"], "cairn.ingest.parsers"),
    ("parsers neither auto nor a count", "[cairn.ingest]\nparsers = \"many\"\n", [],
     "cairn.ingest.parsers"),
    ("missing config file", None, [], "/nonexistent/cairn.ini"),
]


def check_config_errors(args, chk):
    node = h.Node(args.bin_dir, args.source_dir, name="badcfg", keep=args.keep)
    try:
        for i, (desc, ini, flags, must) in enumerate(BAD_CONFIGS):
            path = os.path.join(node.tmp, f"bad{i}.ini")
            if ini is None:
                path = "/nonexistent/cairn.ini"
            else:
                with open(path, "w") as f:
                    f.write(ini)
            cmd = [node.binary, f"--config-file={path}",
                   f"--cairn.tcp.port={node.tcp_port}", f"--cairn.http.port={node.http_port}",
                   f"--cairn.cluster.port={node.cluster_port}",
                   f"--cairn.storage.path={node.storage}"]
            # A bad flag given before the port flags must be reported too.
            cmd[2:2] = flags
            r = h.run_bounded(cmd, timeout=10)
            lines = output_lines(r)
            h.log(f"{desc}: exit {r.returncode}: {lines[:2]}")
            chk.check(r.returncode == 2, f"{desc}: exit code {r.returncode} (expected 2)")
            chk.check(len(lines) == 1, f"{desc}: expected one line, got {lines[:5]}")
            chk.check(any(must in l for l in lines), f"{desc}: no line naming {must!r}: {lines[:3]}")
            chk.check(not any("parser_error" in l or "terminate" in l for l in lines),
                      f"{desc}: raw CAF error or abort: {lines[:3]}")
    finally:
        node.cleanup()


def check_shipped_configs_parse(args, chk):
    files = sorted(glob.glob(os.path.join(args.source_dir, "configs", "**", "*.ini"),
                             recursive=True))
    chk.check(len(files) >= 4, f"expected configs/single.ini and configs/cluster/*.ini, got {files}")
    for path in files:
        # --help after the file: parsed and checked, then exits 0 at once.
        r = h.run_bounded([os.path.join(args.bin_dir, "cairn-node"),
                           f"--config-file={path}", "--dump-config"], timeout=10)
        lines = output_lines(r)
        chk.check(r.returncode == 0, f"{os.path.relpath(path, args.source_dir)}: exit "
                                     f"{r.returncode}: {lines[:3]}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_startup_errors")
    for name, fn in [("ports in use", check_ports), ("config errors", check_config_errors),
                     ("shipped configs", check_shipped_configs_parse)]:
        h.log(f"-- {name}")
        try:
            fn(args, chk)
        except (h.TestFailure, OSError) as e:
            chk.check(False, f"{name}: {e!r}")
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
