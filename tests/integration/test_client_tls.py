#!/usr/bin/env python3
"""TLS on the client ports (issue 11, part 4; docs/operations.md, "TLS").

Certificates from scripts/gen-certs.sh. Two nodes:

  * server-only TLS (cairn.tcp.tls-* and cairn.http.tls-*, no client CA):
    Python `ssl` clients ingest and query over the NDJSON port and check the
    answers; a plain-TCP client on the TLS port gets no reply and is counted
    in `tls_failed`; HTTPS (POST /api, /healthz, /readyz, the dashboard's
    index.html with its CSP header), wss:// /v1/live (snapshot + update),
    `curl --cacert` and `openssl s_client` as real clients; cairn-cli
    (--tls-ca) ping/ingest/query, and refused with a wrong CA or without
    --tls; cairn-bench --tls delivers every event;
  * mutual TLS (cairn.*.tls-client-ca = the CA): a client without a
    certificate, or with a self-signed one, gets nothing on either port;
    with client.pem (cairn-cli --tls-cert/--tls-key, Python, curl) it is
    served.

Start-up errors: a certificate file that does not exist, a key without a
certificate -> exit 2 naming the option; a key that does not match the
certificate -> exit 1 naming it.
"""

import asyncio
import selectors
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

try:
    import websockets  # noqa: E402
except ImportError:  # Debian's package under a non-Debian interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import websockets  # noqa: E402


def client_context(certs, cert=None):
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    if cert:
        ctx.load_cert_chain(os.path.join(certs, f"{cert}.pem"),
                            os.path.join(certs, f"{cert}.key"))
    return ctx


def tls_args(certs, client_ca=False):
    out = []
    for port in ("tcp", "http"):
        out += [f"--cairn.{port}.tls-certificate={certs}/n1.pem",
                f"--cairn.{port}.tls-key={certs}/n1.key"]
        if client_ca:
            out.append(f"--cairn.{port}.tls-client-ca={certs}/ca.pem")
    return out


def cli(args, node, *extra, stdin=None, timeout=60):
    cmd = [os.path.join(args.bin_dir, "cairn-cli"), "--port", str(node.tcp_port),
           "--timeout", "5"] + list(extra)
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True,
                          timeout=timeout)


def refused_by_tls(fn):
    """True if `fn` (which talks to a TLS port) fails: a handshake error, a
    reset, an EOF or no answer. With TLS 1.3 a missing client certificate
    shows only at the first read, so `fn` must read."""
    try:
        fn()
    except (ssl.SSLError, OSError, ConnectionError, TimeoutError, ValueError):
        return True
    return False


def check_server_tls(args, chk, certs):
    node = h.Node(args.bin_dir, args.source_dir, name="tls1",
                  extra_args=tls_args(certs) + [
                      f"--cairn.http.web-root={os.path.join(args.source_dir, 'web')}"])
    node.tls_context = client_context(certs)
    with node:
        # -- NDJSON over TLS: events, flush, query ------------------------------
        now = h.now_ms()
        events = [{"metric": "tls.c", "ts": now - 2000 - i, "value": i % 7,
                   "tags": {"k": f"v{i % 5}"}} for i in range(3000)]
        with node.client(30) as c:
            c.send_lines(events)
            r = c.request({"op": "flush"}, 30)
            chk.check(r.get("ok") is True and r.get("accepted") == 3000,
                      f"flush over TLS: {r}")
            q = c.request({"op": "query", "metric": "tls.c", "from": "-10m",
                           "step": "10m", "aggs": ["count", "sum"]}, 30)
            count = sum(p["count"] for s in q.get("series", []) for p in s["points"])
            total = sum(p["sum"] for s in q.get("series", []) for p in s["points"])
            chk.check(count == 3000 and total == sum(i % 7 for i in range(3000)),
                      f"query over TLS: count {count}, sum {total}: {str(q)[:200]}")
            chk.count(2)
        # -- a plain client on the TLS port gets nothing ------------------------
        plain = socket.create_connection(("127.0.0.1", node.tcp_port), timeout=5)
        plain.sendall(b'{"op":"ping"}\n')
        got = b""
        try:
            while True:
                d = plain.recv(4096)
                if not d:
                    break
                got += d
        except OSError:
            pass
        plain.close()
        chk.check(b'"ok":true' not in got, f"plain TCP on the TLS port answered: {got[:100]!r}")
        with node.client(10) as c:
            st = c.request({"op": "stats"})
        chk.check(st.get("connections", {}).get("tls_failed", 0) >= 1,
                  f"tls_failed not counted: {st.get('connections')}")
        # -- HTTPS: API, health, readiness, dashboard ---------------------------
        ctx = client_context(certs)
        status, _, body = h.http_request(node.http_port, "POST", "/api",
                                         '{"op":"ping"}', ssl_context=ctx)
        chk.check(status == 200 and json.loads(body).get("status") == "ready",
                  f"HTTPS POST /api ping: {status} {body[:200]!r}")
        status, _, body = h.http_request(node.http_port, "POST", "/api",
                                         '{"op":"nope"}', ssl_context=ctx)
        chk.check(status == 400 and json.loads(body)["error"]["code"] == "unknown_op",
                  f"HTTPS unknown op: {status} {body[:200]!r}")
        for path in ("/healthz", "/readyz"):
            status, _, body = h.http_request(node.http_port, "GET", path, ssl_context=ctx)
            chk.check(status == 200, f"HTTPS {path}: {status} {body!r}")
        status, hdrs, body = h.http_request(node.http_port, "GET", "/", ssl_context=ctx)
        chk.check(status == 200 and b"<title>Cairn</title>" in body
                  and "script-src 'self'" in hdrs.get("content-security-policy", ""),
                  f"HTTPS dashboard: {status} {hdrs}")
        chk.check(refused_by_tls(lambda: h.http_request(node.http_port, "GET", "/healthz",
                                                         timeout=5)),
                  "plain HTTP on the HTTPS port was answered")
        # -- wss:// live subscription ------------------------------------------
        async def live():
            async with websockets.connect(f"wss://127.0.0.1:{node.http_port}/v1/live",
                                          ssl=ctx, open_timeout=10) as ws:
                await ws.send(json.dumps({"op": "subscribe", "id": "a",
                                          "query": {"metric": "tls.c", "from": "-10m",
                                                    "step": "1s", "aggs": ["count"]}}))
                snap = json.loads(await asyncio.wait_for(ws.recv(), 10))
                with node.client(10) as c:
                    c.send_line({"metric": "tls.c", "ts": h.now_ms(), "value": 1})
                    c.request({"op": "flush"})
                deadline = time.time() + 10
                while time.time() < deadline:
                    msg = json.loads(await asyncio.wait_for(ws.recv(), 10))
                    if msg.get("type") == "update":
                        return snap, msg
                return snap, None
        snap, update = asyncio.run(live())
        chk.check(snap.get("type") == "snapshot" and snap.get("ok") is True,
                  f"wss snapshot: {str(snap)[:200]}")
        chk.check(update is not None and update.get("ok") is True,
                  f"wss update: {str(update)[:200]}")
        # -- real clients: curl and openssl s_client ----------------------------
        if shutil.which("curl"):
            p = subprocess.run(["curl", "-sS", "--cacert", f"{certs}/ca.pem",
                                "-o", "/dev/null", "-w", "%{http_code}",
                                f"https://127.0.0.1:{node.http_port}/readyz"],
                               capture_output=True, text=True, timeout=30)
            chk.check(p.stdout == "200", f"curl --cacert /readyz: {p.stdout} {p.stderr}")
            p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                                f"https://127.0.0.1:{node.http_port}/readyz"],
                               capture_output=True, text=True, timeout=30)
            chk.check(p.returncode != 0, "curl without the CA accepted the certificate")
        else:
            chk.note("curl not installed: skipped")
        # s_client -quiet ignores the end of its input: read the reply line,
        # then end it.
        sc = subprocess.Popen(["openssl", "s_client", "-quiet", "-verify_return_error",
                               "-CAfile", f"{certs}/ca.pem", "-verify_ip", "127.0.0.1",
                               "-connect", f"127.0.0.1:{node.tcp_port}"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
        try:
            sc.stdin.write('{"op":"ping","id":7}\n')
            sc.stdin.flush()
            sel = selectors.DefaultSelector()
            sel.register(sc.stdout, selectors.EVENT_READ)
            line = sc.stdout.readline() if sel.select(timeout=20) else ""
        finally:
            sc.kill()
            _, err = sc.communicate()
        chk.check('"ok":true' in line and '"id":7' in line,
                  f"openssl s_client ping: {line!r} {err[-300:]!r}")
        # -- cairn-cli and cairn-bench ------------------------------------------
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "ping")
        chk.check(p.returncode == 0 and "ready" in p.stdout,
                  f"cairn-cli --tls-ca ping: {p.returncode} {p.stdout} {p.stderr}")
        lines = "".join(json.dumps({"metric": "tls.cli", "ts": now - 1000 - i, "value": 2})
                        + "\n" for i in range(500))
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "--json", "ingest", "-",
                stdin=lines)
        chk.check(p.returncode == 0 and '"accepted":500' in p.stdout.replace(" ", ""),
                  f"cairn-cli --tls ingest: {p.returncode} {p.stdout} {p.stderr}")
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "--json", "query",
                '{"metric":"tls.cli","from":"-10m","step":"10m","aggs":["sum"]}')
        chk.check(p.returncode == 0 and '"sum":1000' in p.stdout.replace(" ", ""),
                  f"cairn-cli --tls query: {p.returncode} {p.stdout[:300]} {p.stderr}")
        p = cli(args, node, "--tls-ca", f"{certs}/other-ca.pem", "ping")
        chk.check(p.returncode == 2 and "certificate verify failed" in p.stderr,
                  f"cairn-cli with a wrong CA: {p.returncode} {p.stderr}")
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "--tls-server-name",
                "elsewhere.example", "ping")
        chk.check(p.returncode == 2 and "verify failed" in p.stderr,
                  f"cairn-cli with a wrong server name: {p.returncode} {p.stderr}")
        p = cli(args, node, "ping")
        chk.check(p.returncode == 2, f"cairn-cli without --tls: {p.returncode} {p.stderr}")
        p = subprocess.run([os.path.join(args.bin_dir, "cairn-bench"),
                            "--port", str(node.tcp_port), "--tls", "--tls-ca",
                            f"{certs}/ca.pem", "--connections", "2", "--events",
                            "40000", "--json"],
                           capture_output=True, text=True, timeout=120)
        try:
            res = json.loads(p.stdout)
        except ValueError:
            res = {}
        chk.check(p.returncode == 0 and res.get("accepted") == 40000,
                  f"cairn-bench --tls: {p.returncode} {p.stdout[:300]} {p.stderr[:300]}")
        node.stop()


def check_mutual_tls(args, chk, certs):
    node = h.Node(args.bin_dir, args.source_dir, name="tls2",
                  extra_args=tls_args(certs, client_ca=True))
    node.tls_context = client_context(certs, "client")
    with node:
        with node.client(10) as c:
            r = c.request({"op": "ping"})
        chk.check(r.get("ok") is True, f"ping with client.pem: {r}")
        for label, ctx in (("no client certificate", client_context(certs)),
                           ("a self-signed one", client_context(certs, "rogue"))):
            def ndjson():
                with h.Client("127.0.0.1", node.tcp_port, timeout=5, ssl_context=ctx) as c:
                    c.request({"op": "ping"}, 5)
            chk.check(refused_by_tls(ndjson), f"NDJSON with {label} was served")

            def https():
                h.http_request(node.http_port, "GET", "/healthz", timeout=5,
                               ssl_context=ctx)
            chk.check(refused_by_tls(https), f"HTTPS with {label} was served")
        status, _, body = h.http_request(node.http_port, "POST", "/api", '{"op":"ping"}',
                                         ssl_context=client_context(certs, "client"))
        chk.check(status == 200, f"HTTPS with client.pem: {status} {body[:200]!r}")
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "--tls-cert",
                f"{certs}/client.pem", "--tls-key", f"{certs}/client.key", "ping")
        chk.check(p.returncode == 0, f"cairn-cli with client.pem: {p.returncode} {p.stderr}")
        p = cli(args, node, "--tls-ca", f"{certs}/ca.pem", "ping")
        chk.check(p.returncode == 2, f"cairn-cli without a client certificate: "
                                     f"{p.returncode} {p.stdout} {p.stderr}")
        if shutil.which("curl"):
            p = subprocess.run(["curl", "-sS", "--cacert", f"{certs}/ca.pem",
                                "--cert", f"{certs}/client.pem", "--key",
                                f"{certs}/client.key", "-o", "/dev/null", "-w",
                                "%{http_code}", f"https://127.0.0.1:{node.http_port}/healthz"],
                               capture_output=True, text=True, timeout=30)
            chk.check(p.stdout == "200", f"curl --cert: {p.stdout} {p.stderr}")
        with node.client(10) as c:
            st = c.request({"op": "stats"})
        chk.check(st.get("connections", {}).get("tls_failed", 0) >= 2,
                  f"refused handshakes not counted: {st.get('connections')}")
        chk.check(st.get("http", {}).get("tls_failed", 0) >= 2,
                  f"refused HTTPS handshakes not counted: {st.get('http')}")
        node.stop()


def check_startup_errors(args, chk, certs):
    cases = [
        ([f"--cairn.tcp.tls-certificate={certs}/missing.pem",
          f"--cairn.tcp.tls-key={certs}/n1.key"], 2, "cairn.tcp.tls-certificate"),
        ([f"--cairn.http.tls-key={certs}/n1.key"], 2, "cairn.http.tls-key"),
        ([f"--cairn.tcp.tls-certificate={certs}/n1.pem",
          f"--cairn.tcp.tls-key={certs}/client.key"], 1, "cairn.tcp.tls-key"),
    ]
    for extra, code, option in cases:
        node = h.Node(args.bin_dir, args.source_dir, name="tlsbad", extra_args=extra)
        try:
            node.start()
            try:
                rc = node.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                rc = None
            text = node.log_text()
            chk.check(rc == code and option in text,
                      f"{extra}: exit {rc} (want {code}), log: {text[-300:]!r}")
        finally:
            node.cleanup()


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_client_tls")
    certs = tempfile.mkdtemp(prefix="cairn-ctls-")
    try:
        subprocess.run([os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                        certs, "1"], check=True, capture_output=True)
        # An unrelated CA and a self-signed client certificate: what a
        # stranger would present.
        for name in ("other-ca", "rogue"):
            subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes",
                            "-days", "1", "-subj", f"/CN={name}", "-keyout",
                            f"{certs}/{name}.key", "-out", f"{certs}/{name}.pem"],
                           check=True, capture_output=True)
        check_server_tls(args, chk, certs)
        check_mutual_tls(args, chk, certs)
        check_startup_errors(args, chk, certs)
    except h.TestFailure as e:
        chk.check(False, str(e))
    finally:
        if not args.keep:
            shutil.rmtree(certs, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
