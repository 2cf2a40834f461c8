"""A local webhook receiver for the alerting tests (Python http.server).

Records every POST (path, headers, JSON body, the client's port, arrival
time) and answers according to its mode: "ok" (200), "fail" (500), "reject" (400), "slow"
(sleeps `slow_seconds`, then 200). HTTP/1.1 keep-alive, so connection reuse
is visible: `client_ports()` is the set of distinct client sockets that sent
requests. `stop()` closes the listening socket (the port refuses
connections); `start()` binds the same port again.
"""

import http.server
import json
import socketserver
import ssl
import threading
import time


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The header and the body are two writes: without TCP_NODELAY, Nagle
    # plus the client's delayed ACK add 40 ms to every keep-alive response.
    disable_nagle_algorithm = True

    def log_message(self, *a):
        pass

    def do_POST(self):
        rx = self.server.receiver
        n = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(n)
        mode = rx.mode
        arrived = time.time()
        try:
            body = json.loads(raw)
        except ValueError:
            body = None
        with rx.lock:
            rx.attempts.append({"mode": mode, "port": self.client_address[1],
                                "key": self.headers.get("Idempotency-Key"),
                                "body": body, "at": arrived,
                                "headers": dict(self.headers)})
        if mode == "slow":
            time.sleep(rx.slow_seconds)
        status = {"fail": 500, "reject": 400}.get(mode, 200)
        if status == 200:
            with rx.lock:
                rx.received.append({"port": self.client_address[1],
                                    "key": self.headers.get("Idempotency-Key"),
                                    "headers": dict(self.headers),
                                    "body": body, "at": arrived,
                                    "raw": raw, "path": self.path})
        out = b'{"ok":true}' if status == 200 else b'{"error":"injected"}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)
        except OSError:
            self.close_connection = True  # the client gave up (slow mode)


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class Receiver:
    def __init__(self, port=0, tls=None):
        """`tls`: (certificate PEM path, key PEM path) to serve https://."""
        self.port = port
        self.tls = tls
        self.mode = "ok"
        self.slow_seconds = 2.0
        self.lock = threading.Lock()
        self.attempts = []   # every POST, whatever the answer
        self.received = []   # POSTs answered 200
        self.server = None
        self.thread = None

    def start(self):
        self.server = _Server(("127.0.0.1", self.port), _Handler)
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.server.receiver = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       daemon=True)
        self.thread.start()
        return self

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}/hook"

    def delivered(self, rule=None):
        """The 200-answered notifications as (status, key) per alert, in
        arrival order (optionally of one rule)."""
        out = []
        with self.lock:
            for r in self.received:
                b = r["body"] or {}
                for a in b.get("alerts", []):
                    if rule is None or a["labels"].get("alertname") == rule:
                        out.append((a["status"], r["key"], a, r["at"]))
        return out

    def client_ports(self):
        with self.lock:
            return {r["port"] for r in self.attempts}
