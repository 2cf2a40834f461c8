#!/usr/bin/env python3
"""cairn-console against a real node (docs/console.md).

--exec: every command (help, ping, nodes, cluster, actors, inspect, send,
metrics, series, query, topk, ingest, watch, breakers, snapshot, stats),
asserting on the printed content, their --json output (query agrees with the
same query over the NDJSON protocol), the error lines (unknown command with a
suggestion, bad syntax with a caret, unknown actor, bad JSON) and exit codes
(1 failed command, stops at the first failure, 2 unreachable node, 64 usage).

Interactive, through a pseudo-terminal: types a query and reads the table,
completes a command and an actor name with Tab, interrupts a watch with
Ctrl-C (and the console stays), clears a half-typed line with Ctrl-C, then
kills the node (SIGKILL), sees the console report the lost connection,
restarts the node and sees it reconnect; Ctrl-D leaves with status 0 and the
history file holds the commands.
"""

import json
import os
import pty
import re
import select
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

METRIC = "console.latency_ms"
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>]")


class Console:
    """Runs cairn-console --exec against a node."""

    def __init__(self, args, node, home):
        self.args, self.node, self.home = args, node, home

    @property
    def binary(self):
        return os.path.join(self.args.bin_dir, "cairn-console")

    def env(self):
        env = dict(os.environ)
        env["HOME"] = self.home
        return env

    def run(self, commands, *extra, port=None, timeout=60):
        cmd = [self.binary, f"--connect=127.0.0.1:{port or self.node.cluster_port}",
               f"--exec={commands}", "--timeout=5"] + list(extra)
        p = h.subprocess.run(cmd, capture_output=True, timeout=timeout, env=self.env())
        out = p.stdout.decode("utf-8", "replace")
        err = p.stderr.decode("utf-8", "replace")
        if self.args.verbose:
            h.log(f"$ {' '.join(cmd)}\n-> {p.returncode}\n{out}{err}")
        return p.returncode, out, err

    def json(self, command):
        code, out, err = self.run(command, "--json")
        lines = [l for l in out.splitlines() if l.strip()]
        try:
            return code, json.loads(lines[-1]) if lines else {}, err
        except ValueError:
            return code, {"unparsed": out}, err


def ingest_events(node, now):
    """Events 5-3 s ago in three regions; returns them."""
    events = []
    for i in range(30):
        region = ["eu", "us", "ap"][i % 3]
        events.append({"metric": METRIC, "ts": now - 5000 + (i % 3) * 1000,
                       "value": float(i), "tags": {"service": "api", "region": region}})
    with node.client() as c:
        r = c.request({"op": "ingest", "events": events})
    if r.get("accepted") != len(events):
        raise h.TestFailure(f"setup ingest failed: {r}")
    return events


def check_exec(args, node, con, chk):
    name = node.name
    now = h.now_ms()
    ingest_events(node, now)

    def expect(command, code, *needles, stream="out", absent=()):
        rc, out, err = con.run(command)
        text = out if stream == "out" else err
        ok = chk.check(rc == code, f"{command!r}: exit {rc}, expected {code}; "
                                   f"stdout={out[:400]!r} stderr={err[:400]!r}")
        for n in needles:
            ok &= chk.check(n in text, f"{command!r}: {n!r} missing from {stream}: {text[:800]!r}")
        for n in absent:
            ok &= chk.check(n not in text, f"{command!r}: {n!r} unexpected in {stream}")
        return out, err

    # help
    expect("help", 0, "COMMAND", "query", "watch", "snapshot", "breakers", "Tab completes")
    expect("help query", 0, "usage: query METRIC", "where", "by TAG")
    expect("help qurey", 1, "did you mean 'query'", stream="err")
    # ping / nodes / cluster / breakers
    expect("ping", 0, f"{name} 0.1.0 ready", "round trip")
    out, _ = expect("nodes", 0, "mode: single", "single node, no peers", f"{name} (self)",
                    "partition map: version 1, 8 partitions")
    expect("cluster", 0, f"{name}", "partition map")
    expect("breakers", 0, "no circuit breakers")
    rc, j, _ = con.json("breakers")
    chk.check(rc == 0 and j.get("breakers") == [] and j.get("ok") is True,
              f"breakers --json: {j}")
    rc, j, _ = con.json("nodes")
    chk.check(rc == 0 and j.get("mode") == "single"
              and [m.get("name") for m in j.get("members", [])] == [name],
              f"nodes --json: {j}")
    # actors
    out, _ = expect("actors", 0, "NAME", "KIND", "MAILBOX", "PROCESSED", "STATE",
                    "query_coordinator", "ingestor", "parser-0", "p7", "partition",
                    f"actors on {name}")
    rc, j, _ = con.json("actors")
    names = [a.get("name") for a in j.get("actors", [])]
    chk.check(rc == 0 and {"node", "ingestor", "query_coordinator", "p0", "p7"} <= set(names)
              and len([n for n in names if re.fullmatch(r"p\d+", n or "")]) == 8,
              f"actors --json names: {names}")
    for a in j.get("actors", []):
        chk.check(isinstance(a.get("mailbox"), int) and isinstance(a.get("processed"), int)
                  and a["processed"] >= 1,
                  f"actor {a.get('name')}: mailbox/processed not counters: {a}")
    parts = {a["name"]: a for a in j.get("actors", []) if a.get("kind") == "partition"}
    events = sum(p.get("state", {}).get("events", 0) for p in parts.values())
    chk.check(events == 30, f"partition states sum to {events} events, expected 30")
    expect(f"actors {name}", 0, "p0")
    expect("actors nosuchnode", 1, "unknown node 'nosuchnode'", stream="err")
    # inspect
    busy = max(parts.values(), key=lambda p: p.get("state", {}).get("events", 0))["name"]
    out, _ = expect(f"inspect {busy}", 0, f"actor:     {busy} (partition)", "series:",
                    "buckets:", "journal_seq:", "snapshot_seq:", "last_snapshot:",
                    "credits:", "limit: ", "available:")
    expect("inspect ingestor", 0, "credits_per_partition: ", "in_flight")
    expect("inspect nosuch", 1, "no actor named 'nosuch'", stream="err")
    # send
    out, _ = expect(f"send {busy} {{\"op\":\"stats\"}}", 0, "journal_seq:", "series:")
    rc, j, _ = con.json(f"send {busy} {{\"op\":\"stats\"}}")
    chk.check(rc == 0 and j.get("journal_seq", 0) >= 1 and j.get("events", 0) >= 1,
              f"send stats --json: {j}")
    expect("send node {\"op\":\"ping\"}", 0, f"node: {name}")
    expect("send query_coordinator {\"op\":\"metrics\"}", 0, METRIC)
    expect(f"send {busy} {{\"op\":\"introspect\"}}", 0, "mailbox:", "processed:")
    expect("send p0 {\"op\":\"bogus\"}", 1, "does not understand op 'bogus'",
           "introspect, stats, snapshot", stream="err")
    expect("send p0 {\"op\":", 1, "not valid JSON", "^", stream="err")
    # metrics / series
    expect("metrics", 0, "METRIC", "SERIES", METRIC)
    rc, j, _ = con.json("metrics")
    chk.check({"name": METRIC, "series": 3} in j.get("metrics", []), f"metrics --json: {j}")
    expect(f"series {METRIC}", 0, "region=eu service=api", "region=us service=api",
           "region=ap service=api")
    expect(f"series {METRIC} where region=us", 0, "region=us", absent=("region=eu",))
    # query: table and JSON identical to the protocol's answer
    q = f"query {METRIC} count,sum,max,p50 -1m step=1m where service=api by region"
    out, _ = expect(q, 0, "region", "TIME", "count", "sum", "max", "p50", "eu", "us", "ap",
                    "(3 rows, tier 1m, step 60s)")
    rows = [l.split() for l in out.splitlines() if l.startswith(("eu", "us", "ap"))]
    chk.check(sorted(r[0] for r in rows) == ["ap", "eu", "us"], f"query rows: {rows}")
    for r in rows:
        chk.check(r[2] == "10", f"query row {r}: count should be 10")
    header = out.splitlines()[0]
    chk.check(header.index("count") < header.index("sum") < header.index("max"),
              f"columns in agg order: {header!r}")
    rc, via_console, _ = con.json(f"query {METRIC} count,max from={now - 60000} to={now + 1000} "
                                  f"step=1s by region")
    with node.client() as c:
        via_tcp = c.request({"op": "query", "metric": METRIC, "from": now - 60000,
                             "to": now + 1000, "step": "1s", "aggs": ["count", "max"],
                             "group_by": ["region"]})
    chk.check(rc == 0 and via_console == via_tcp,
              f"query --json differs from the protocol reply:\n{via_console}\n{via_tcp}")
    expect(f"query {METRIC} p99 -1m where region=nowhere", 0, "no data")
    # topk
    out, _ = expect(f"topk {METRIC} by region 2 max -1m", 0, "RANK", "region", "max")
    ranks = [l.split() for l in out.splitlines()[1:] if l.strip()]
    chk.check([r[1] for r in ranks] == ["ap", "us"] and ranks[0][2] == "29",
              f"topk rows: {ranks}")
    # ingest
    ev = {"metric": METRIC, "ts": now - 2000, "value": 100, "tags": {"service": "api", "region": "eu"}}
    expect(f"ingest {json.dumps(ev)}", 0, "accepted 1, rejected 0")
    expect(f"ingest [{json.dumps(ev)}, {{\"metric\":\"bad metric!\"}}]", 1,
           "accepted 1, rejected 1", "event 1: invalid_event")
    rc, j, _ = con.json(f"ingest {{\"events\":[{json.dumps(ev)}],\"idempotency_key\":\"console-k1\"}}")
    chk.check(rc == 0 and j.get("accepted") == 1, f"ingest --json: {j}")
    rc, j, _ = con.json(f"ingest {{\"events\":[{json.dumps(ev)}],\"idempotency_key\":\"console-k1\"}}")
    chk.check(rc == 0 and j.get("duplicate") is True, f"repeated idempotency key: {j}")
    expect("ingest {\"metric\": ", 1, "not valid JSON", stream="err")
    # watch (limit=N polls): the newest closed bucket, then new ones
    # All three in one 1 s bucket that has closed (now - 1.5 s could straddle
    # a second boundary, which split them into two rows now and then).
    second = (h.now_ms() - 1500) // 1000 * 1000
    with node.client() as c:
        c.request({"op": "ingest", "events": [
            {"metric": "console.watch", "ts": second + 100 + k * 10, "value": 4,
             "tags": {"region": "eu"}} for k in range(3)]})
    out, _ = expect("watch console.watch count,max limit=2", 0, "watching console.watch",
                    "count", "max")
    data = [l for l in out.splitlines() if re.match(r"\d{4}-\d\d-\d\dT", l)]
    chk.check(len(data) >= 1 and data[0].split()[1:] == ["3", "4"],
              f"watch rows: {data} (out {out!r})")
    rc, j, _ = con.json("watch console.watch count by region limit=1")
    chk.check(rc == 0 and j.get("tags") == {"region": "eu"} and isinstance(j.get("count"), int),
              f"watch --json: {j}")
    # snapshot
    out, _ = expect(f"snapshot {busy}", 0, "PARTITION", "COVERED_SEQ", busy, "yes")
    _, after, _ = con.json(f"inspect {busy}")
    st = after.get("state", {})
    chk.check(st.get("snapshot_seq") == st.get("journal_seq") and st.get("last_snapshot_ms", 0) > 0,
              f"after snapshot, inspect says {st}")
    expect("snapshot all", 0, "empty partitions skipped")
    expect("snapshot p99", 1, "snapshot needs a partition p0..p7", stream="err")
    # stats
    expect("stats", 0, "events_applied:", "partitions:", f"node: {name}", "uptime_ms:")
    # errors
    expect("qurey m", 1, "unknown command 'qurey' (did you mean 'query'?)", stream="err")
    _, err = expect("query m p99,avx -15m", 1, "unknown aggregate 'avx'", stream="err")
    lines = err.splitlines()
    caret = [i for i, l in enumerate(lines) if "^" in l]
    chk.check(caret and lines[caret[0] - 1].index("p99,avx") == lines[caret[0]].index("^")
              and lines[caret[0]].count("^") == len("p99,avx"),
              f"caret does not point at the token: {err!r}")
    expect("query", 1, "expected a metric name", stream="err")
    expect("topk m k=3", 1, "topk needs 'by TAG'", stream="err")
    rc, j, _ = con.json("query m step=fast")
    chk.check(rc == 1 and j.get("ok") is False and "bad step" in j.get("error", "")
              and j.get("position") == 8, f"syntax error --json: {j}")
    # --exec stops at the first failure
    rc, out, err = con.run("ping; bogus; metrics")
    chk.check(rc == 1 and "ready" in out and METRIC not in out,
              f"--exec did not stop at the failure: rc={rc} out={out!r}")
    # unreachable node, usage
    dead = h.free_port()
    rc, out, err = con.run("ping", port=dead)
    chk.check(rc == 2 and f"cannot connect to 127.0.0.1:{dead}" in err,
              f"unreachable node: rc={rc} err={err!r}")
    p = h.subprocess.run([con.binary, "--bogus"], capture_output=True, timeout=20)
    chk.check(p.returncode == 64 and b"unknown option" in p.stderr,
              f"usage error: {p.returncode} {p.stderr!r}")


# -- interactive ----------------------------------------------------------------

class Pty:
    """cairn-console on a pseudo-terminal (it is the controlling terminal, so
    Ctrl-C sends SIGINT like a real keyboard)."""

    def __init__(self, argv, env):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            try:
                os.execve(argv[0], argv, env)
            finally:
                os._exit(127)
        self.buf = b""
        self.mark = 0

    def send(self, data):
        os.write(self.fd, data.encode() if isinstance(data, str) else data)

    def _read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:
            return False
        if not chunk:
            return False
        self.buf += chunk
        return True

    def text(self, since=0):
        """The screen output with escape sequences and CRs removed, from
        character `since` of that cleaned text."""
        return ANSI.sub(b"", self.buf).decode("utf-8", "replace").replace("\r", "")[since:]

    def expect(self, pattern, timeout=15):
        """Waits until `pattern` (regex) appears after the mark; moves the mark
        past it. Raises TestFailure with the screen text on timeout."""
        deadline = time.time() + timeout
        rx = re.compile(pattern)
        while True:
            m = rx.search(self.text(self.mark))
            if m:
                self.mark += m.end()
                return m
            left = deadline - time.time()
            if left <= 0:
                raise h.TestFailure(f"pty: {pattern!r} not seen in "
                                    f"{self.text(self.mark)[-1500:]!r}")
            self._read(min(left, 0.2))

    def drain(self, seconds=0.3):
        end = time.time() + seconds
        while time.time() < end:
            self._read(0.05)
        self.mark = len(self.text())

    def wait(self, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self._read(0.05)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid == self.pid:
                return os.waitstatus_to_exitcode(status)
        return None

    def kill(self):
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except OSError:
            pass


def check_interactive(args, node, home, chk):
    env = dict(os.environ, HOME=home, TERM="xterm")
    binary = os.path.join(args.bin_dir, "cairn-console")
    term = Pty([binary, f"--connect=127.0.0.1:{node.cluster_port}", "--timeout=5",
                "--reconnect-wait=60"], env)
    try:
        term.expect(r"connected to " + node.name)
        term.expect(rf"cairn {node.name}> ")
        # A query typed at the prompt, printed as a table.
        term.send(f"query {METRIC} count -1m step=1m by region\r")
        term.expect(r"region\s+TIME\s+count[\s\S]*eu\s+\S+Z\s+\d+[\s\S]*rows, tier")
        term.expect(rf"cairn {node.name}> ")
        chk.check(True, "query table")
        # Tab completes a command, then an actor name.
        term.send("insp\t")
        term.expect(r"inspect ")
        term.send("ingest\t")
        term.expect(r"ingestor ")
        term.send("\r")
        term.expect(r"actor:\s+ingestor \(ingestor\)[\s\S]*credits_per_partition")
        term.expect(rf"cairn {node.name}> ")
        # Tab completes a metric name after query.
        term.send("series console.la\t")
        term.expect(re.escape(METRIC) + " ")
        term.send("\r")
        term.expect(r"region=eu service=api")
        term.expect(rf"cairn {node.name}> ")
        # A watch runs until Ctrl-C; the console stays.
        term.send(f"watch {METRIC} count\r")
        term.expect(r"watching " + re.escape(METRIC))
        time.sleep(1.5)
        term.send(b"\x03")
        term.expect(r"watch stopped")
        term.expect(rf"cairn {node.name}> ")
        # Ctrl-C on a half-typed line clears it.
        term.send("this is not a command")
        time.sleep(0.3)
        term.send(b"\x03")
        time.sleep(0.3)
        term.drain()
        term.send("ping\r")
        m = term.expect(rf"{node.name} 0\.1\.0 ready|unknown command")
        chk.check("unknown command" not in m.group(0),
                  "Ctrl-C did not clear the half-typed line")
        term.expect(rf"cairn {node.name}> ")
        # Kill the node: the console says so and reconnects when it is back.
        node.kill()
        time.sleep(0.5)
        term.send("ping\r")
        term.expect(r"(lost|not connected|cannot connect)[^\n]*reconnecting", timeout=20)
        node.start()
        node.wait_ready()
        term.expect(r"reconnected to 127\.0\.0\.1:" + str(node.cluster_port), timeout=30)
        term.expect(rf"{node.name} 0\.1\.0 ready", timeout=15)
        term.expect(rf"cairn {node.name}> ")
        term.send(f"series {METRIC}\r")
        term.expect(r"region=us service=api")  # recovered from the journal
        term.expect(rf"cairn {node.name}> ")
        # Unknown command: one line, the console stays.
        term.send("actros\r")
        term.expect(r"unknown command 'actros' \(did you mean 'actors'\?\)")
        term.expect(rf"cairn {node.name}> ")
        # Ctrl-D leaves.
        term.send(b"\x04")
        code = term.wait(10)
        chk.check(code == 0, f"Ctrl-D: exit status {code}")
    finally:
        term.kill()
    hist = os.path.join(home, ".cairn_console_history")
    try:
        with open(hist) as f:
            history = f.read()
    except OSError as e:
        history = repr(e)
    chk.check(f"query {METRIC} count -1m step=1m by region" in history and "ping" in history,
              f"history file lacks the commands: {history!r}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_console")
    home = tempfile.mkdtemp(prefix="cairn-console-home-")
    with h.Node(args.bin_dir, args.source_dir, name="t1", keep=args.keep) as node:
        con = Console(args, node, home)
        h.log("-- --exec")
        try:
            check_exec(args, node, con, chk)
        except Exception as e:
            chk.check(False, f"--exec: {e!r}")
        h.log("-- interactive (pty)")
        try:
            check_interactive(args, node, home, chk)
        except Exception as e:
            chk.check(False, f"interactive: {e!r}")
        if chk.failures:
            node.dump_log(60)
        if node.alive():
            code, _ = node.terminate(10)
            chk.check(code == 0, f"SIGTERM: exit {code}")
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
