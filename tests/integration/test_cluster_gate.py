"""The cluster gate (docs/cluster.md, "Cluster gate", issue 9): hostile
connections to a cluster port are closed alone, the established links and
queries never notice.

Plain cluster (3 nodes): a BASP header announcing a 0xFFFFFFF0-byte payload
(as first frame and after a handshake frame) is closed and the node's RSS
stays within +64 MB; garbage bytes are closed; a silent connection and a
partial header are closed after the handshake timeout; during all of it
cairn-console still connects and every query stays complete.

TLS cluster (3 nodes): a loop of bare TCP connects, garbage, half TLS
handshakes, TLS without a client certificate, and certificate-holding
connections sending garbage or a huge header, while queries run on every
node: every answer is complete ("partial": false), every member stays up and
no breaker opened (`opened` counters unchanged). Then one member is
SIGKILLed: the link between the two others stays up."""

import os
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import cairn_harness as h
from cluster_harness import Cluster

N = 3
HANDSHAKE_TIMEOUT = "1s"


def header(op, payload_len, op_data=0, src=0, dst=0, flags=0):
    return struct.pack(">BBBBIQQQ", op, 0, 0, flags, payload_len, op_data,
                       src, dst)


# A client handshake frame (its payload need not be a valid node id: the gate
# checks frames, CAF checks contents).
HANDSHAKE = header(1, 24) + b"\x00" * 24
HUGE = header(2, 0xFFFFFFF0, dst=1)


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return -1


def closed_within(sock, seconds):
    """True if the peer closes `sock` within `seconds` (EOF or reset)."""
    sock.settimeout(seconds)
    deadline = time.time() + seconds
    try:
        while time.time() < deadline:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
        return True
    except socket.timeout:
        return False
    return False


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=5)


def breaker_opened(cluster):
    """{(node, member): opened} over every link."""
    out = {}
    for node in cluster.nodes:
        if not node.alive():
            continue
        v = cluster.cluster_view(node)
        for m in v.get("members", []):
            if not m.get("self"):
                out[(node.name, m["name"])] = m.get("breaker", {}).get("opened")
    return out


def gate_stats(node):
    with node.client(10) as c:
        return c.request({"op": "stats"}, 10).get("cluster_gate", {})


def console(args, node, commands, *extra):
    cmd = [os.path.join(args.bin_dir, "cairn-console"),
           f"--connect=127.0.0.1:{node.cluster_port}", f"--exec={commands}",
           "--timeout=5", "--reconnect-wait=3"] + list(extra)
    env = dict(os.environ, HOME=tempfile.mkdtemp(prefix="cairn-gate-home-"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    return p.returncode, p.stdout, p.stderr


def ingest(chk, node, metric, n):
    now = h.now_ms()
    events = [{"metric": metric, "ts": now - 1000 - i, "value": i % 10,
               "tags": {"k": f"v{i % 17}"}} for i in range(n)]
    with node.client(30) as c:
        r = c.request({"op": "ingest", "events": events}, 30)
        chk.check(r.get("accepted") == n, f"ingest: {r}")


class QueryLoop:
    """Queries `metric` on every node in a thread until stopped; records every
    answer that is not complete and correct."""

    def __init__(self, cluster, metric, expect):
        self.cluster, self.metric, self.expect = cluster, metric, expect
        self.bad, self.count = [], 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        clients = [n.client(30) for n in self.cluster.nodes]
        try:
            while not self.stop.is_set():
                for node, c in zip(self.cluster.nodes, clients):
                    q = c.request({"op": "query", "metric": self.metric,
                                   "from": "-10m", "step": "10m",
                                   "aggs": ["count"]}, 30)
                    total = sum(p["count"] for s in q.get("series", [])
                                for p in s["points"])
                    self.count += 1
                    if q.get("partial") is not False or total != self.expect:
                        self.bad.append(f"{node.name}: partial="
                                        f"{q.get('partial')} count={total}")
        except Exception as e:  # noqa: BLE001 -- reported as a failure
            self.bad.append(f"query loop died: {e!r}")
        finally:
            for c in clients:
                c.close()

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *a):
        self.stop.set()
        self.thread.join(60)


def check_links(chk, cluster, before, label):
    after = breaker_opened(cluster)
    chk.check(after == before, f"{label}: breakers opened {before} -> {after}")
    for node in cluster.nodes:
        v = cluster.cluster_view(node)
        chk.check(v.get("up") == N, f"{label}: {node.name} sees up={v.get('up')}")


# -- plain ----------------------------------------------------------------------

def plain_part(args, chk):
    cluster = Cluster(args, n=N, partitions=6, prefix="g", extra_args=[
        f"--cairn.cluster.handshake-timeout={HANDSHAKE_TIMEOUT}"])
    try:
        cluster.start(timeout=60)
        first = cluster.nodes[0]
        ingest(chk, first, "gate.m", 1200)
        before = breaker_opened(cluster)
        chk.check(all(v == 0 for v in before.values()),
                  f"breakers opened before the test: {before}")
        pid = first.proc.pid
        rss0 = rss_kb(pid)
        with QueryLoop(cluster, "gate.m", 1200) as loop:
            # A huge payload length as first frame, and after a handshake
            # frame; two connections at once, as the probe did.
            socks = []
            for data in (HUGE, HANDSHAKE + HUGE, header(1, 0xFFFFFFF0)):
                s = connect(first.cluster_port)
                s.sendall(data)
                socks.append(s)
            for s, what in zip(socks, ("huge first frame", "huge after handshake",
                                       "huge handshake")):
                chk.check(closed_within(s, 3), f"{what}: not closed")
                s.close()
            time.sleep(0.5)
            rss1 = rss_kb(pid)
            h.log(f"RSS of {first.name}: {rss0} kB -> {rss1} kB")
            chk.check(rss1 - rss0 < 64 * 1024,
                      f"RSS grew from {rss0} kB to {rss1} kB")
            # Garbage: closed at once.
            s = connect(first.cluster_port)
            s.sendall(b"GET / HTTP/1.1\r\nHost: cairn\r\n\r\n" + os.urandom(512))
            chk.check(closed_within(s, 3), "garbage: not closed")
            s.close()
            # Silent and partial: closed after the handshake timeout, and
            # meanwhile a console connects and answers.
            silent = connect(first.cluster_port)
            partial = connect(first.cluster_port)
            partial.sendall(HANDSHAKE[:20])
            t0 = time.time()
            result = {}
            con = threading.Thread(target=lambda: result.update(
                r=console(args, first, "stats")), daemon=True)
            con.start()
            chk.check(closed_within(silent, 5), "silent connection not closed")
            chk.check(closed_within(partial, 5), "partial header not closed")
            waited = time.time() - t0
            chk.check(0.5 <= waited <= 4.5,
                      f"stuck handshakes closed after {waited:.2f}s")
            con.join(70)
            code, out, err = result.get("r", (None, "", "console hung"))
            chk.check(code == 0 and first.name in out,
                      f"console during stuck handshakes: {code}\n{out}\n{err}")
            silent.close()
            partial.close()
            # A loop of hostile connections while the console connects.
            stop = threading.Event()

            def hostile():
                i = 0
                while not stop.is_set():
                    try:
                        s = connect(first.cluster_port)
                        s.sendall((HUGE, os.urandom(64), b"", HANDSHAKE + HUGE)[i % 4])
                        s.close()
                    except OSError:
                        pass
                    i += 1
            t = threading.Thread(target=hostile, daemon=True)
            t.start()
            code, out, err = console(args, first, "stats")
            chk.check(code == 0 and first.name in out,
                      f"console during hostile loop: {code}\n{out}\n{err}")
            time.sleep(2)
            stop.set()
            t.join(10)
        h.log(f"plain: {loop.count} queries during the test")
        chk.check(loop.count > 0, "no query ran")
        chk.check(not loop.bad, f"incomplete answers: {loop.bad[:5]}")
        check_links(chk, cluster, before, "plain")
        st = gate_stats(first)
        h.log(f"gate stats of {first.name}: {st}")
        chk.check(st.get("frames_rejected", 0) >= 5, f"gate stats: {st}")
        chk.check(st.get("handshake_timeouts", 0) >= 2, f"gate stats: {st}")
        chk.check(rss_kb(pid) - rss0 < 64 * 1024,
                  f"RSS grew from {rss0} kB to {rss_kb(pid)} kB")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)


# -- TLS --------------------------------------------------------------------------

def half_tls_handshake(port):
    """Sends a ClientHello and stops there."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_side=False)
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    s = connect(port)
    s.sendall(outgoing.read())
    return s


def tls_client(port, certs, name):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(f"{certs}/ca.pem")
    if name:
        ctx.load_cert_chain(f"{certs}/{name}.pem", f"{certs}/{name}.key")
    s = ctx.wrap_socket(connect(port))
    return s


def tls_part(args, chk):
    certs = tempfile.mkdtemp(prefix="cairn-gate-tls-")
    subprocess.run([os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                    certs, str(N)], check=True, capture_output=True)
    tls = [f"--cairn.cluster.tls-certificate={certs}/n1.pem",
           f"--cairn.cluster.tls-key={certs}/n1.key",
           f"--cairn.cluster.tls-ca-file={certs}/ca.pem",
           f"--cairn.cluster.handshake-timeout={HANDSHAKE_TIMEOUT}"]
    cluster = Cluster(args, n=N, partitions=6, extra_args=tls, prefix="t")
    try:
        cluster.start(timeout=60)
        first = cluster.nodes[0]
        ingest(chk, first, "gate.t", 900)
        time.sleep(1)
        before = breaker_opened(cluster)
        chk.check(all(v == 0 for v in before.values()),
                  f"breakers opened before the test: {before}")
        counts = {"connect": 0, "garbage": 0, "half": 0, "nocert": 0,
                  "cert_garbage": 0, "cert_huge": 0}
        with QueryLoop(cluster, "gate.t", 900) as loop:
            deadline = time.time() + 8
            i = 0
            while time.time() < deadline:
                # Every kind against every node in turn.
                kind = list(counts)[i % len(counts)]
                node = cluster.nodes[(i // len(counts)) % N]
                i += 1
                try:
                    if kind == "connect":       # nc -z
                        connect(node.cluster_port).close()
                    elif kind == "garbage":
                        s = connect(node.cluster_port)
                        s.sendall(os.urandom(300))
                        s.close()
                    elif kind == "half":
                        half_tls_handshake(node.cluster_port).close()
                    elif kind == "nocert":
                        try:
                            s = tls_client(node.cluster_port, certs, None)
                            s.sendall(HANDSHAKE)
                            s.recv(1)
                            s.close()
                        except (ssl.SSLError, OSError):
                            pass
                    elif kind == "cert_garbage":
                        s = tls_client(node.cluster_port, certs, "n2")
                        s.sendall(b"\x42" * 64)
                        chk.check(closed_within(s, 3),
                                  "TLS garbage with a certificate: not closed")
                        s.close()
                    elif kind == "cert_huge":
                        rss0 = rss_kb(node.proc.pid)
                        s = tls_client(node.cluster_port, certs, "n3")
                        s.sendall(HANDSHAKE + HUGE)
                        chk.check(closed_within(s, 3),
                                  "TLS huge header: not closed")
                        s.close()
                        grown = rss_kb(node.proc.pid) - rss0
                        chk.check(grown < 64 * 1024,
                                  f"TLS huge header: RSS +{grown} kB")
                    counts[kind] += 1
                except OSError as e:
                    chk.check(False, f"{kind} to {node.name}: {e!r}")
            # Half handshakes left open: closed by the handshake timeout.
            stuck = [half_tls_handshake(n.cluster_port) for n in cluster.nodes]
            for s in stuck:
                chk.check(closed_within(s, 5), "half TLS handshake not closed")
                s.close()
        h.log(f"TLS: hostile connections {counts}, {loop.count} queries")
        chk.check(loop.count > 0, "no query ran")
        chk.check(not loop.bad, f"incomplete answers ({len(loop.bad)} of "
                                f"{loop.count}): {loop.bad[:5]}")
        check_links(chk, cluster, before, "TLS")
        for node in cluster.nodes:
            st = gate_stats(node)
            chk.check(st.get("tls_failed", 0) > 0
                      and st.get("frames_rejected", 0) > 0,
                      f"gate stats of {node.name}: {st}")
        # The console with a certificate still gets in, through the gate.
        code, out, err = console(args, first, "stats",
                                 f"--openssl.certificate={certs}/n2.pem",
                                 f"--openssl.key={certs}/n2.key",
                                 f"--openssl.cafile={certs}/ca.pem")
        chk.check(code == 0 and first.name in out,
                  f"console with a certificate: code {code}\n{out}\n{err}")
        # A member SIGKILLed: the link between the other two stays up (its
        # dialer's OpenSSL is in the outbound tunnel, not in CAF).
        before = breaker_opened(cluster)
        second, third = cluster.nodes[1], cluster.nodes[2]
        third.kill()
        cluster.wait_until(
            lambda: all(cluster.member(cluster.cluster_view(n), third.name)
                        .get("status") == "unreachable" for n in (first, second)),
            30, "the others to see t3 down")
        time.sleep(2)
        after = breaker_opened(cluster)
        for a, b in ((first.name, second.name), (second.name, first.name)):
            chk.check(after.get((a, b)) == before.get((a, b)),
                      f"{a}->{b} went down when t3 was killed: "
                      f"{before.get((a, b))} -> {after.get((a, b))}")
        for a in (first, second):
            m = cluster.member(cluster.cluster_view(a), first.name if a is second
                               else second.name)
            chk.check(m.get("status") == "up", f"{a.name}: {m}")
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        cluster.finish(chk)


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_cluster_gate")
    plain_part(args, chk)
    tls_part(args, chk)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
