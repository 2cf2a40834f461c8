#!/usr/bin/env python3
"""The tutorials run as written.

For docs/tutorial.md, docs/tutorial-cluster.md and the "Try it" section of
docs/integrations.md: every ```sh block is run,
in order, in one bash process from the source tree (so variables carry over,
as in a reader's shell), with the tutorial's own variables (CAIRN_PORT,
CAIRN_BASE_PORT, ...) pointed at free loopback ports and a temporary folder.
A ```text block right after a ```sh block is that block's promised output:
its lines must appear in the output in order, each matching a whole output
line, where `...` matches any text. Each block must exit 0. The process group
is killed at the end, so nothing the tutorial started outlives the test.
"""

import os
import re
import signal
import subprocess
import sys
import tempfile
import shutil
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

MARK = "@@cairn-doc-block"


def blocks(path):
    """[(sh text, expected text or None, line number)]"""
    lines = open(path, encoding="utf-8").read().split("\n")
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        lang, start = m.group(1), i + 1
        j = start
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        body = "\n".join(lines[start:j])
        if lang == "sh":
            out.append([body, None, start])
        elif lang == "text" and out and out[-1][1] is None and out[-1][2] is not None \
                and _only_blank_between(lines, out[-1], start):
            out[-1][1] = body
        i = j + 1
    return out


def _only_blank_between(lines, prev, start):
    # The text block must follow its sh block with nothing but blank lines.
    k = prev[2]
    while k < len(lines) and not lines[k].startswith("```"):
        k += 1
    return all(not l.strip() for l in lines[k + 1:start - 1])


def pattern(line):
    parts = [re.escape(p) for p in line.split("...")]
    return re.compile("^" + ".*?".join(parts) + "$")


def match_expected(expected, output):
    """None if every expected line matches an output line, in order."""
    out_lines = [l.rstrip() for l in output.split("\n")]
    pos = 0
    for want in [l.rstrip() for l in expected.split("\n") if l.strip()]:
        rx = pattern(want)
        while pos < len(out_lines) and not rx.match(out_lines[pos]):
            pos += 1
        if pos == len(out_lines):
            return want
        pos += 1
    return None


def run_tutorial(args, chk, doc, env_extra, timeout):
    path = os.path.join(args.source_dir, "docs", doc)
    bl = blocks(path)
    chk.require(len(bl) >= 3, f"{doc}: only {len(bl)} sh blocks")
    script = ["set -o pipefail"]
    for n, (body, _, line) in enumerate(bl):
        # Each block runs in the same shell; its status is printed after it.
        script.append(f"echo '{MARK} {n} start'")
        script.append("(exit 0)")
        script.append(body)
        script.append(f"echo \"{MARK} {n} status $?\"")
    tmp = tempfile.mkdtemp(prefix="cairn-it-docs-")
    env = dict(os.environ, **env_extra(tmp))
    t0 = time.time()
    proc = subprocess.Popen(["bash", "-c", "\n".join(script)], cwd=args.source_dir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        code = proc.returncode
    except subprocess.TimeoutExpired:
        code = None
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    finally:
        try:  # whatever the tutorial left running in its process group
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    took = time.time() - t0
    text = out.decode("utf-8", "replace")
    chk.check(code is not None, f"{doc}: did not finish within {timeout}s")
    outputs = {}
    for m in re.finditer(rf"{MARK} (\d+) start\n(.*?){MARK} \1 status (\d+)", text, re.S):
        outputs[int(m.group(1))] = (m.group(2), int(m.group(3)))
    for n, (body, expected, line) in enumerate(bl):
        first = body.strip().split("\n")[0][:70]
        if n not in outputs:
            chk.check(False, f"{doc}:{line}: block `{first}` did not complete")
            continue
        output, status = outputs[n]
        ok = chk.check(status == 0, f"{doc}:{line}: block `{first}` exited {status}:\n{output[-1500:]}")
        if expected is not None:
            missing = match_expected(expected, output)
            ok = chk.check(missing is None,
                           f"{doc}:{line}: output lacks the promised line {missing!r}; "
                           f"got:\n{output[-1500:]}") and ok
            chk.count()
    if args.verbose or chk.failures:
        h.log(text[-6000:])
    h.log(f"{doc}: {len(bl)} blocks, {sum(1 for b in bl if b[1])} promised outputs, "
          f"{took:.1f}s")
    if not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_docs")
    for tool in ("nc", "curl", "python3", "node", "go"):
        chk.require(shutil.which(tool) is not None,
                    f"{tool} not found (scripts/install-deps.sh installs it)")

    def single_env(tmp):
        tcp, http, cluster = h.free_ports(3)
        return {"CAIRN_PORT": str(tcp), "CAIRN_HTTP_PORT": str(http),
                "CAIRN_CLUSTER_PORT": str(cluster), "CAIRN_BIN": args.bin_dir,
                "CAIRN_DIR": os.path.join(tmp, "run"),
                "GOCACHE": os.path.join(tmp, "gocache"), "GOFLAGS": "",
                "GO111MODULE": "off"}

    def cluster_env(tmp):
        # scripts/cluster.sh: node i uses BASE+10i (cluster), +1 NDJSON, +2 HTTP.
        base = h.free_base([10, 11, 12, 20, 21, 22, 30, 31, 32])
        return {"CAIRN_BASE_PORT": str(base),
                "CAIRN_CLUSTER_DIR": os.path.join(tmp, "cluster"),
                "CAIRN_BIN": os.path.join(args.bin_dir, "cairn-node")}

    def influx_env(tmp):
        env = single_env(tmp)
        env["CAIRN_INFLUX_PORT"] = str(h.free_port())
        return env

    for doc, env, timeout in [("tutorial.md", single_env, 90),
                              ("tutorial-cluster.md", cluster_env, 120),
                              ("integrations.md", influx_env, 60)]:
        if not os.path.exists(os.path.join(args.source_dir, "docs", doc)):
            chk.check(False, f"docs/{doc} is missing")
            continue
        h.log(f"-- {doc}")
        try:
            run_tutorial(args, chk, doc, env, timeout)
        except (h.TestFailure, OSError) as e:
            chk.check(False, f"{doc}: {e!r}")
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
