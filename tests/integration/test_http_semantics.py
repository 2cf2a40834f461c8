#!/usr/bin/env python3
"""HTTP semantics of the HTTP port (issue 11, part 6; docs/protocol.md,
"HTTP statuses" and "Health and readiness").

  * POST /api error replies carry their status with the protocol's JSON
    body: bad_request / unknown_op / invalid_event 400, a body over 8 MiB
    413 (too_large), unavailable 503 (while recovering); successes 200,
    ingest with rejected events still 200;
  * 405 with an Allow header (GET /api, POST /metrics, POST /healthz,
    POST /readyz, POST on a dashboard file), 404 for unknown paths, 426 for
    GET /v1/live without the upgrade;
  * /healthz 200 from the start; /readyz and POST /api 503 while the node
    recovers (CAIRN_TEST_RECOVERY_DELAY_MS stretches the recovery), 200
    after; the log says `ready` only after `recovery complete`;
  * the Prometheus routes keep Prometheus' conventions (400 bad_data,
    404 for an unknown endpoint, 503 unavailable while recovering);
  * web-root: the default "web" is found from the binary when the node
    runs elsewhere; a relative web-root next to the config file is found;
    a missing one is a warning at start and a 404.
"""

import json
import os
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

RECOVERY_DELAY_MS = 3000


def api(node, body, headers=None):
    status, hdrs, raw = h.http_request(node.http_port, "POST", "/api", body,
                                       headers=headers)
    try:
        return status, hdrs, json.loads(raw)
    except ValueError:
        return status, hdrs, raw


def check_statuses(chk, node):
    status, _, r = api(node, '{"op":"ping"}')
    chk.check(status == 200 and r.get("ok") is True, f"ping: {status} {r}")
    cases = [
        ('{"op":"nope"}', 400, "unknown_op"),
        ("this is not json", 400, "bad_request"),
        ('{"metric":"bad metric!"}', 400, "invalid_event"),
        ('{"op":"query"}', 400, "bad_request"),
        ('{"op":"subscribe","id":1,"query":{"metric":"m"}}', 400, "bad_request"),
    ]
    for body, want, code in cases:
        status, hdrs, r = api(node, body)
        got = r.get("error", {}).get("code") if isinstance(r, dict) else None
        chk.check(status == want and got == code
                  and hdrs.get("content-type", "").startswith("application/json"),
                  f"{body}: {status} {r} (want {want} {code})")
        chk.count()
    # A successful ingest with a rejected event is a 200: the errors are
    # per event, in the reply.
    status, _, r = api(node, json.dumps({"op": "ingest", "events": [
        {"metric": "ok.m", "ts": h.now_ms(), "value": 1}, {"metric": "bad metric!"}]}))
    chk.check(status == 200 and r.get("accepted") == 1 and r.get("rejected") == 1,
              f"ingest with one rejected event: {status} {r}")
    # Over the 8 MiB limit: the answer comes as soon as the header announces
    # the length (a client still sending would hit a closed socket).
    with socket.create_connection(("127.0.0.1", node.http_port), timeout=10) as raw:
        raw.sendall(b"POST /api HTTP/1.1\r\nHost: x\r\nContent-Length: 9437184\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
            d = raw.recv(65536)
            if not d:
                break
            data += d
    head, _, body = data.partition(b"\r\n\r\n")
    chk.check(head.startswith(b"HTTP/1.1 413") and b'"code":"too_large"' in body,
              f"9 MiB body: {data[:300]!r}")
    for method, path, allow in (("GET", "/api", "POST"), ("POST", "/metrics", "GET, HEAD"),
                                ("POST", "/healthz", "GET, HEAD"),
                                ("DELETE", "/readyz", "GET, HEAD"),
                                ("POST", "/", "GET, HEAD"), ("POST", "/v1/live", "GET")):
        status, hdrs, raw = h.http_request(node.http_port, method, path,
                                           b"" if method == "POST" else None)
        chk.check(status == 405 and hdrs.get("allow") == allow,
                  f"{method} {path}: {status} allow={hdrs.get('allow')!r} (want 405 {allow!r})")
        chk.count()
    status, _, _ = h.http_request(node.http_port, "GET", "/no/such/file")
    chk.check(status == 404, f"GET /no/such/file: {status}")
    status, hdrs, _ = h.http_request(node.http_port, "GET", "/v1/live")
    chk.check(status == 426 and hdrs.get("upgrade", "").lower() == "websocket",
              f"GET /v1/live without upgrade: {status} {hdrs}")
    # Prometheus' own conventions on /api/v1/.
    status, body = h.http_get_json(node.http_port, "/api/v1/query", {"query": "sum("})
    chk.check(status == 400 and body.get("errorType") == "bad_data",
              f"PromQL parse error: {status} {body}")
    status, body = h.http_get_json(node.http_port, "/api/v1/nope")
    chk.check(status == 404 and body.get("status") == "error",
              f"unknown Prometheus endpoint: {status} {body}")


def check_recovery(args, chk):
    """Readiness while recovering: SIGKILL a node holding journaled events,
    restart it with a stretched recovery and watch /healthz, /readyz and
    POST /api from the first moment the port answers."""
    storage = tempfile.mkdtemp(prefix="cairn-it-ready-")
    node = h.Node(args.bin_dir, args.source_dir, name="rdy", storage_dir=storage)
    with node:
        with node.client(10) as c:
            r = c.request({"op": "ingest", "events": [
                {"metric": "ready_m", "ts": h.now_ms() - 1000, "value": 1}] * 50})
            chk.require(r.get("accepted") == 50, f"ingest: {r}")
        node.kill()
    again = h.Node(args.bin_dir, args.source_dir, name="rdy", storage_dir=storage)
    os.environ["CAIRN_TEST_RECOVERY_DELAY_MS"] = str(RECOVERY_DELAY_MS)
    try:
        again.start()
    finally:
        del os.environ["CAIRN_TEST_RECOVERY_DELAY_MS"]
    try:
        seen = {"healthz": set(), "readyz": set(), "api": set(), "prom": set()}
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                s1, _, _ = h.http_request(again.http_port, "GET", "/healthz", timeout=2)
            except OSError:
                time.sleep(0.05)
                continue
            s2, _, body = h.http_request(again.http_port, "GET", "/readyz", timeout=2)
            s3, _, r = api(again, '{"op":"query","metric":"ready_m","from":"-10m"}')
            s4, pb = h.http_get_json(again.http_port, "/api/v1/query",
                                     {"query": "count_over_time(ready_m[5m])"})
            seen["healthz"].add(s1)
            seen["readyz"].add(s2)
            seen["api"].add(s3)
            seen["prom"].add(s4)
            if s2 == 503:
                chk.check(b"recovering" in body, f"/readyz 503 body: {body!r}")
                chk.check(s3 == 503 and isinstance(r, dict)
                          and r.get("error", {}).get("code") == "unavailable",
                          f"POST /api while recovering: {s3} {r}")
                chk.check(s4 == 503 and pb.get("errorType") == "unavailable",
                          f"Prometheus query while recovering: {s4} {pb}")
            if s2 == 200:
                chk.check(s3 == 200, f"POST /api once ready: {s3} {r}")
                break
            time.sleep(0.1)
        chk.check(seen["healthz"] == {200}, f"/healthz answers: {seen['healthz']}")
        chk.check(seen["readyz"] == {503, 200}, f"/readyz answers: {seen['readyz']} "
                                                f"(want 503 while recovering, then 200)")
        chk.check(503 in seen["api"] and 503 in seen["prom"],
                  f"no 503 while recovering: {seen}")
        log = again.log_text()
        rec = log.find("recovery complete")
        ready = log.find(" ready: tcp ")
        chk.check(rec >= 0 and ready > rec,
                  f"'ready' logged before 'recovery complete' (at {ready} vs {rec})")
        chk.check("listening: tcp" in log[:rec if rec >= 0 else len(log)],
                  "no 'listening' line while recovering")
        again.stop()
    finally:
        again.cleanup()


def check_web_root(args, chk):
    # The default "web", relative: not in the node's cwd (a temp dir) nor next
    # to configs/single.ini, found from the binary (build/apps -> the tree).
    with h.Node(args.bin_dir, args.source_dir, name="web1") as node:
        status, _, body = h.http_request(node.http_port, "GET", "/")
        chk.check(status == 200 and b"<title>Cairn</title>" in body,
                  f"dashboard from the binary's tree: {status}")
        chk.check("dashboard files in " in node.log_text(), "no 'dashboard files in' line")
        check_statuses(chk, node)
    # A web-root relative to the config file.
    conf_dir = tempfile.mkdtemp(prefix="cairn-it-webconf-")
    os.makedirs(os.path.join(conf_dir, "dash"))
    with open(os.path.join(conf_dir, "dash", "index.html"), "w") as f:
        f.write("<!doctype html><title>next to the config</title>\n")
    conf = os.path.join(conf_dir, "node.ini")
    with open(os.path.join(args.source_dir, "configs", "single.ini")) as src, \
            open(conf, "w") as dst:
        dst.write(src.read().replace('web-root = "web"', 'web-root = "dash"'))
    with h.Node(args.bin_dir, args.source_dir, name="web2", config=conf) as node:
        status, _, body = h.http_request(node.http_port, "GET", "/")
        chk.check(status == 200 and b"next to the config" in body,
                  f"web-root next to the config file: {status} {body[:100]!r}")
    # Missing: a warning naming the option, then 404.
    with h.Node(args.bin_dir, args.source_dir, name="web3",
                extra_args=["--cairn.http.web-root=no-such-dir"]) as node:
        status, _, _ = h.http_request(node.http_port, "GET", "/")
        chk.check(status == 404, f"missing web-root: GET / {status}")
        log = node.log_text()
        chk.check("dashboard files not found" in log and "no-such-dir" in log,
                  f"no warning for a missing web-root: {log[-400:]!r}")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_http_semantics")
    try:
        check_web_root(args, chk)
        check_recovery(args, chk)
    except h.TestFailure as e:
        chk.check(False, str(e))
    return chk.summary()


if __name__ == "__main__":
    sys.exit(main())
