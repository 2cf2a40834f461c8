#!/usr/bin/env python3
"""Client authentication (JWT) and rate limits against real nodes
(docs/protocol.md, "Authentication" and "Rate limits").

Tokens are minted by two other libraries: Python's PyJWT (Debian
python3-jwt) and Node's jsonwebtoken (tests/auth, npm). Checked:
- the JWT matrix -- valid (both libraries), tampered, expired, nbf in the
  future, alg none, wrong key, wrong scope, no token -- over NDJSON (the
  `auth` op first), HTTP (POST /api, the Prometheus query API, /write,
  /metrics, Bearer) and the WebSocket /v1/live (Sec-WebSocket-Protocol
  header, or the first message): `unauthorized` (401) for no / invalid /
  expired tokens, `forbidden` (403) for a missing scope; an unauthenticated
  NDJSON connection is closed after its error line; ping needs no token;
- HS256 (required on loopback), RS256 and ES256 with public keys; the
  HS256-with-the-public-key confusion refused;
- cairn-cli and cairn-bench with --token and CAIRN_TOKEN (a refused token:
  exit 1 / 2);
- no token value in the node's log;
- rate limits: 429 + Retry-After + retry_after_ms past requests/s on HTTP,
  recovery after the window; NDJSON `rate_limited` with retry_after_ms for
  requests; a flooding NDJSON client is slowed (not read), then refused,
  while another principal keeps a low ping latency; per-principal counters
  in stats and /metrics.
"""

import asyncio
import base64
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

try:
    import jwt  # noqa: E402
    import websockets  # noqa: E402
except ImportError:  # Debian's packages under a non-Debian interpreter
    sys.path.append("/usr/lib/python3/dist-packages")
    import jwt  # noqa: E402
    import websockets  # noqa: E402

ARGS = None
CHECK = h.Checker("auth")
TMP = tempfile.mkdtemp(prefix="cairn-auth-")
SECRET = base64.b64encode(os.urandom(40)).decode()
ALL_TOKENS = []  # every token minted, to look for in the logs


def sh(*cmd):
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def keypair(kind, name="node"):
    priv = os.path.join(TMP, f"{kind}-{name}.key")
    pub = os.path.join(TMP, f"{kind}-{name}.pub")
    if kind == "rsa":
        sh("openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
           "-out", priv)
    else:
        sh("openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
           "-out", priv)
    sh("openssl", "pkey", "-in", priv, "-pubout", "-out", pub)
    return priv, pub


def py_mint(alg, key, claims, headers=None):
    t = jwt.encode(claims, key, algorithm=alg, headers=headers)
    ALL_TOKENS.append(t)
    return t


def node_mint(alg, key_file, claims):
    d = os.path.join(ARGS.source_dir, "tests", "auth")
    t = subprocess.run(["node", os.path.join(d, "mint.js"), alg, key_file, json.dumps(claims)],
                       check=True, capture_output=True, text=True, cwd=d).stdout.strip()
    ALL_TOKENS.append(t)
    return t


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def alg_none(claims):
    t = (b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode()) + "."
         + b64url(json.dumps(claims).encode()) + ".")
    ALL_TOKENS.append(t)
    return t


def tamper(token, claims):
    """The token's header and signature around another payload."""
    head, _, sig = token.split(".")
    t = head + "." + b64url(json.dumps(claims).encode()) + "." + sig
    ALL_TOKENS.append(t)
    return t


def claims(sub, scope, **extra):
    c = {"sub": sub, "scope": scope, "exp": int(time.time()) + 3600}
    c.update(extra)
    return c


# -- transports ----------------------------------------------------------------

def ndjson_auth(node, token, then=None):
    """auth (if token) then the lines `then`; returns (replies, closed)."""
    with node.client(timeout=5) as c:
        lines = ([{"op": "auth", "token": token}] if token is not None else []) + (then or [])
        c.send_lines(lines)
        replies = []
        try:
            while True:
                replies.append(c.read_json(timeout=1.0))
        except TimeoutError:
            pass
        except ConnectionError:
            pass
        return replies, c.closed_by_peer


def http(node, path, body=None, token=None, method=None, headers=None):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}",
                                 data=body.encode() if isinstance(body, str) else body,
                                 method=method)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode(), dict(r.headers)
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(), dict(e.headers)


def code_of(text):
    try:
        j = json.loads(text)
    except ValueError:
        return None
    if "errorType" in j:
        return j["errorType"]
    return (j.get("error") or {}).get("code")


async def ws_try(node, header_token=None, first_token=None):
    """Opens /v1/live, optionally with the token in Sec-WebSocket-Protocol or
    an auth message, then subscribes; returns the subscribe reply type or
    error code, or 'refused:<status>' for a refused handshake."""
    url = f"ws://127.0.0.1:{node.http_port}/v1/live"
    protos = ["cairn", "bearer." + header_token] if header_token else None
    try:
        async with websockets.connect(url, subprotocols=protos, open_timeout=5) as ws:
            if first_token is not None:
                await ws.send(json.dumps({"op": "auth", "token": first_token}))
                r = json.loads(await asyncio.wait_for(ws.recv(), 5))
                if not r.get("ok"):
                    return r["error"]["code"]
            await ws.send(json.dumps({"op": "subscribe", "id": "s",
                                      "query": {"metric": "auth.m", "step": "1s"}}))
            r = json.loads(await asyncio.wait_for(ws.recv(), 5))
            return r.get("type") if r.get("ok") else r["error"]["code"]
    except websockets.exceptions.InvalidStatusCode as e:
        return f"refused:{e.status_code}"


def ws(node, **kw):
    return asyncio.run(ws_try(node, **kw))


async def ws_refused_then_closed(node, first):
    """Sends `first` on /v1/live without a token in the handshake; returns
    (error code of the reply, close code the node then sent or None)."""
    url = f"ws://127.0.0.1:{node.http_port}/v1/live"
    async with websockets.connect(url, open_timeout=5) as sock:
        await sock.send(json.dumps(first))
        r = json.loads(await asyncio.wait_for(sock.recv(), 5))
        try:
            await asyncio.wait_for(sock.recv(), 5)
            return (r.get("error") or {}).get("code"), None
        except websockets.exceptions.ConnectionClosed as e:
            return (r.get("error") or {}).get("code"), e.code


# -- the matrix ------------------------------------------------------------------

def matrix_hs256():
    h.log("== HS256, required on a loopback node: the matrix over every transport")
    # The node's file ends in a newline (ignored); jsonwebtoken signs with
    # the bare secret.
    secret_file = os.path.join(TMP, "secret")
    with open(secret_file, "w") as f:
        f.write(SECRET + "\n")
    bare = os.path.join(TMP, "secret.bare")
    with open(bare, "w") as f:
        f.write(SECRET)
    secret_file_node = secret_file
    secret_file = bare
    now = int(time.time())
    good_py = py_mint("HS256", SECRET, claims("py-writer", "ingest query"))
    good_node = node_mint("HS256", secret_file, claims("node-writer", "ingest query"))
    tokens = {
        "tampered": tamper(good_py, claims("py-writer", "ingest query admin")),
        "expired": py_mint("HS256", SECRET, claims("a", "ingest query", exp=now - 3600)),
        "nbf_future": py_mint("HS256", SECRET, claims("a", "ingest query", nbf=now + 3600)),
        "alg_none": alg_none(claims("root", "ingest query admin")),
        "wrong_key": py_mint("HS256", "another-secret-of-at-least-32-bytes!!", claims("a", "ingest query")),
        "node_wrong_key": node_mint("HS256", __file__, claims("a", "ingest query")),
        "garbage": "not.a.jwt",
    }
    query_only = py_mint("HS256", SECRET, claims("reader", "query"))
    ingest_only = node_mint("HS256", secret_file, claims("writer", "ingest"))
    event = {"metric": "auth.m", "value": 1}
    with h.Node(ARGS.bin_dir, ARGS.source_dir, name="auth1", keep=ARGS.keep,
                extra_args=["--cairn.storage.enabled=false", "--cairn.auth.required=true",
                            f"--cairn.auth.secret-file={secret_file_node}", "--cairn.auth.leeway=5s"]) as node:
        node.wait_ready()  # ping needs no token
        # NDJSON: valid tokens of both libraries.
        for name, tok in (("pyjwt", good_py), ("jsonwebtoken", good_node)):
            r, closed = ndjson_auth(node, tok, [event, event, {"op": "flush"}])
            CHECK.check(len(r) == 2 and r[0].get("ok") and r[0].get("scopes") == ["ingest", "query"]
                        and r[1].get("accepted") == 2 and not closed,
                        f"NDJSON {name} token: auth ok + 2 events accepted, got {r} closed={closed}")
        # No token: an event is refused and the connection closed.
        r, closed = ndjson_auth(node, None, [event, event])
        CHECK.check(len(r) == 1 and r[0]["error"]["code"] == "unauthorized" and r[0].get("line") == 1
                    and closed, f"NDJSON without auth: one unauthorized line, closed; got {r} {closed}")
        r, closed = ndjson_auth(node, None, [{"op": "query", "metric": "auth.m"}])
        CHECK.check(len(r) == 1 and r[0]["error"]["code"] == "unauthorized" and closed,
                    f"NDJSON query without auth: unauthorized, closed; got {r}")
        for name, tok in tokens.items():
            r, closed = ndjson_auth(node, tok, [event])
            CHECK.check(len(r) == 1 and r[0]["error"]["code"] == "unauthorized" and closed,
                        f"NDJSON {name}: unauthorized and closed, got {r} closed={closed}")
            status, body, _ = http(node, "/api", '{"op":"stats"}', token=tok)
            CHECK.check(status == 401 and code_of(body) == "unauthorized",
                        f"POST /api {name}: 401 unauthorized, got {status} {body[:200]}")
            status, body, _ = http(node, "/api/v1/query?query=auth_m", token=tok)
            CHECK.check(status == 401 and code_of(body) == "unauthorized",
                        f"Prometheus {name}: 401, got {status} {body[:200]}")
            status, body, _ = http(node, "/write", "auth.m value=1\n", token=tok)
            CHECK.check(status == 401, f"/write {name}: 401, got {status} {body[:200]}")
            CHECK.check(ws(node, header_token=tok) == "refused:401",
                        f"WebSocket header {name}: handshake refused 401")
            CHECK.check(ws(node, first_token=tok) == "unauthorized",
                        f"WebSocket first message {name}: unauthorized")
        # A WebSocket that does not authenticate (or presents a bad token)
        # gets the error, then a policy close, like an NDJSON connection.
        for what, first in (("no auth", {"op": "subscribe", "id": "s",
                                         "query": {"metric": "auth.m", "step": "1s"}}),
                            ("bad token", {"op": "auth", "token": tokens["tampered"]})):
            got = asyncio.run(ws_refused_then_closed(node, first))
            CHECK.check(got == ("unauthorized", 1008),
                        f"WebSocket {what}: unauthorized then close 1008, got {got}")
        # Wrong scope: authenticated, then forbidden per op.
        r, closed = ndjson_auth(node, query_only, [event, {"op": "query", "metric": "auth.m"},
                                                   {"op": "cluster"}])
        codes = [x.get("error", {}).get("code") for x in r[1:]]
        CHECK.check(r and r[0].get("ok") and codes[0] == "forbidden" and codes[2:] == ["forbidden"]
                    and len(r) == 4 and r[2].get("ok") and not closed,
                    f"NDJSON query-only token: event forbidden, query ok, cluster forbidden; got {r}")
        r, _ = ndjson_auth(node, ingest_only, [{"op": "series"}, event, {"op": "flush"}])
        CHECK.check(len(r) == 3 and r[1]["error"]["code"] == "forbidden" and r[2].get("accepted") == 1,
                    f"NDJSON ingest-only token: series forbidden, event accepted; got {r}")
        # HTTP with valid tokens, and wrong scopes.
        for name, tok in (("pyjwt", good_py), ("jsonwebtoken", good_node)):
            status, body, _ = http(node, "/api", json.dumps({"op": "ingest", "events": [event]}), token=tok)
            CHECK.check(status == 200 and json.loads(body).get("accepted") == 1,
                        f"POST /api ingest {name}: 200 accepted 1, got {status} {body[:200]}")
            status, body, _ = http(node, "/api/v1/query?query=auth_m", token=tok)
            CHECK.check(status == 200 and json.loads(body).get("status") == "success",
                        f"Prometheus query {name}: 200, got {status} {body[:200]}")
            status, body, _ = http(node, "/write", "auth.m value=1\n", token=tok)
            CHECK.check(status == 204, f"/write {name}: 204, got {status} {body[:200]}")
            CHECK.check(ws(node, header_token=tok) == "snapshot",
                        f"WebSocket header {name}: subscribed")
            CHECK.check(ws(node, first_token=tok) == "snapshot",
                        f"WebSocket first message {name}: subscribed")
        status, body, _ = http(node, "/api", '{"op":"cluster"}', token=good_py)
        CHECK.check(status == 403 and code_of(body) == "forbidden",
                    f"POST /api cluster without admin: 403, got {status} {body[:200]}")
        status, body, _ = http(node, "/api/v1/query?query=auth_m", token=ingest_only)
        CHECK.check(status == 403 and code_of(body) == "forbidden",
                    f"Prometheus with ingest-only token: 403, got {status} {body[:200]}")
        status, body, _ = http(node, "/write", "auth.m value=1\n", token=query_only)
        CHECK.check(status == 403 and code_of(body) == "forbidden",
                    f"/write with query-only token: 403, got {status} {body[:200]}")
        CHECK.check(ws(node, header_token=ingest_only) == "refused:403",
                    "WebSocket with an ingest-only token: 403")
        status, body, hdrs = http(node, "/api", '{"op":"stats"}')
        CHECK.check(status == 401 and "Bearer" in hdrs.get("WWW-Authenticate", ""),
                    f"POST /api without a token: 401 + WWW-Authenticate, got {status} {hdrs}")
        status, body, _ = http(node, "/metrics")
        CHECK.check(status == 401, f"/metrics without a token: 401, got {status}")
        status, body, _ = http(node, "/healthz")
        CHECK.check(status == 200, "/healthz stays open")
        status, body, _ = http(node, "/readyz")
        CHECK.check(status == 200 and body.strip() == "ok",
                    f"/readyz stays open (probes carry no token), got {status} {body[:100]}")
        status, body, _ = http(node, "/metrics", token=query_only)
        CHECK.check(status == 200 and 'cairn_rate_events_total{principal="py-writer"}' in body
                    and "cairn_auth_unauthorized_total" in body,
                    "/metrics with a query token: per-principal counters")
        status, body, _ = http(node, "/api", '{"op":"stats"}', token=query_only)
        st = json.loads(body).get("auth", {})
        CHECK.check(st.get("required") is True and st.get("unauthorized", 0) > 10
                    and st.get("forbidden", 0) >= 5
                    and any(p["principal"] == "node-writer" and p["events"] >= 2
                            for p in st.get("principals", [])),
                    f"stats auth section: {json.dumps(st)[:400]}")
        # The clients: --token and CAIRN_TOKEN.
        cli = os.path.join(ARGS.bin_dir, "cairn-cli")
        bench = os.path.join(ARGS.bin_dir, "cairn-bench")
        port = ["--port", str(node.tcp_port)]
        p = subprocess.run([cli, *port, "--token", good_py, "metrics"], capture_output=True,
                           text=True, timeout=30)
        CHECK.check(p.returncode == 0 and "auth.m" in p.stdout,
                    f"cairn-cli --token metrics: exit {p.returncode} {p.stdout[-200:]} {p.stderr[-200:]}")
        env = dict(os.environ, CAIRN_TOKEN=good_node)
        p = subprocess.run([cli, *port, "stats"], capture_output=True, text=True, timeout=30, env=env)
        CHECK.check(p.returncode == 0, f"cairn-cli with CAIRN_TOKEN: exit {p.returncode} {p.stderr[-200:]}")
        p = subprocess.run([cli, *port, "--token", tokens["expired"], "metrics"],
                           capture_output=True, text=True, timeout=30)
        CHECK.check(p.returncode == 1 and "unauthorized" in p.stderr,
                    f"cairn-cli with an expired token: exit 1 unauthorized, got {p.returncode} {p.stderr[-200:]}")
        p = subprocess.run([cli, *port, "metrics"], capture_output=True, text=True, timeout=30)
        CHECK.check(p.returncode != 0, f"cairn-cli without a token fails: exit {p.returncode}")
        p = subprocess.run([bench, *port, "--events", "20000", "--connections", "2"],
                           capture_output=True, text=True, timeout=60, env=env)
        CHECK.check(p.returncode == 0 and "20,000 accepted" in p.stdout,
                    f"cairn-bench with CAIRN_TOKEN: exit {p.returncode} {p.stdout[-300:]} {p.stderr[-200:]}")
        p = subprocess.run([bench, *port, "--events", "1000", "--token", tokens["wrong_key"]],
                           capture_output=True, text=True, timeout=60)
        CHECK.check(p.returncode == 2 and "refused the token" in p.stderr,
                    f"cairn-bench with a wrong-key token: exit 2, got {p.returncode} {p.stderr[-200:]}")
        # No token bytes in the log (the signature part is the secret-bearing one).
        text = node.log_text()
        leaked = [t for t in ALL_TOKENS if len(t) > 20 and (t in text or t.split(".")[-1] in text
                                                          and len(t.split(".")[-1]) > 10)]
        CHECK.check(not leaked, f"no token in the node's log ({len(leaked)} found)")
        CHECK.count(len(ALL_TOKENS))


def public_keys():
    h.log("== RS256 / ES256 with public keys; algorithm confusion")
    for kind, alg in (("rsa", "RS256"), ("ec", "ES256")):
        priv, pub = keypair(kind)
        with open(priv) as f:
            priv_pem = f.read()
        with open(pub) as f:
            pub_pem = f.read()
        other_priv, _ = keypair(kind, "stranger")
        with open(other_priv) as f:
            other_pem = f.read()
        with h.Node(ARGS.bin_dir, ARGS.source_dir, name=f"auth-{kind}", keep=ARGS.keep,
                    extra_args=["--cairn.storage.enabled=false", "--cairn.auth.required=true",
                                f"--cairn.auth.algorithm={alg}",
                                f"--cairn.auth.public-key-file={pub}"]) as node:
            node.wait_ready()
            good = {"pyjwt": py_mint(alg, priv_pem, claims("k-py", "ingest")),
                    "jsonwebtoken": node_mint(alg, priv, claims("k-node", "ingest"))}
            for name, tok in good.items():
                r, closed = ndjson_auth(node, tok, [{"metric": "auth.m"}, {"op": "flush"}])
                CHECK.check(len(r) == 2 and r[0].get("ok") and r[1].get("accepted") == 1,
                            f"{alg} {name}: accepted, got {r}")
                status, _, _ = http(node, "/write", "auth.m value=1\n", token=tok)
                CHECK.check(status == 204, f"{alg} {name} /write: 204, got {status}")
            bad = {"wrong_key": py_mint(alg, other_pem, claims("k", "ingest")),
                   "hs256_with_public_key": jwt_confused(pub_pem),
                   "alg_none": alg_none(claims("k", "ingest")),
                   "tampered": tamper(good["pyjwt"], claims("k-py", "ingest admin"))}
            for name, tok in bad.items():
                r, closed = ndjson_auth(node, tok, [{"metric": "auth.m"}])
                CHECK.check(len(r) == 1 and r[0]["error"]["code"] == "unauthorized" and closed,
                            f"{alg} {name}: unauthorized, got {r}")


def jwt_confused(pub_pem):
    """HS256 'signed' with the public key's PEM text (PyJWT refuses to do it,
    so it is signed by hand)."""
    import hashlib
    import hmac
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps(claims("k", "ingest admin")).encode())
    sig = hmac.new(pub_pem.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    t = f"{head}.{body}.{b64url(sig)}"
    ALL_TOKENS.append(t)
    return t


def rate_limits():
    h.log("== rate limits")
    secret_file = os.path.join(TMP, "secret")
    flood = py_mint("HS256", SECRET, claims("flood", "ingest query"))
    calm = py_mint("HS256", SECRET, claims("calm", "ingest query"))
    http_user = py_mint("HS256", SECRET, claims("http-user", "query"))
    with h.Node(ARGS.bin_dir, ARGS.source_dir, name="auth-rate", keep=ARGS.keep,
                extra_args=["--cairn.storage.enabled=false",
                            f"--cairn.auth.secret-file={secret_file}",
                            "--cairn.rate.events-per-sec=20000",
                            "--cairn.rate.requests-per-sec=5",
                            "--cairn.rate.max-delay=300ms"]) as node:
        node.wait_ready()
        # HTTP: a burst of 5, then 429 with Retry-After and retry_after_ms.
        got = [http(node, "/api/v1/query?query=auth_m", token=http_user) for _ in range(8)]
        statuses = [g[0] for g in got]
        CHECK.check(statuses[:5] == [200] * 5 and 429 in statuses[5:],
                    f"HTTP requests/s: 5 pass then 429, got {statuses}")
        limited = next((g for g in got if g[0] == 429), None)
        if limited:
            err = json.loads(limited[1])
            retry = err["error"]["retry_after_ms"] if "error" in err and isinstance(err["error"], dict) else None
            CHECK.check(limited[2].get("Retry-After", "").isdigit() and retry is None
                        or (retry and retry > 0),
                        f"429 carries Retry-After and retry_after_ms: {limited}")
            status, body, hdrs = http(node, "/api", '{"op":"stats"}', token=http_user)
            CHECK.check(status == 429 and code_of(body) == "rate_limited"
                        and json.loads(body)["error"]["retry_after_ms"] > 0
                        and hdrs.get("Retry-After", "").isdigit(),
                        f"POST /api past the rate: 429 + retry_after_ms + Retry-After, got {status} {body} {hdrs}")
        # Events past the events/s rate in one POST /api ingest: the parser's
        # rate_limited reply becomes 429 with Retry-After too.
        writer = py_mint("HS256", SECRET, claims("http-writer", "ingest"))
        now = int(time.time() * 1000)
        big = {"op": "ingest", "events": [{"metric": "auth.rate", "ts": now - i, "value": i}
                                          for i in range(30000)]}
        # (A request larger than the burst passes on a full bucket and leaves
        # a debt; the next one waits for it.)
        first, _, _ = http(node, "/api", json.dumps(big), token=writer)
        status, body, hdrs = http(node, "/api", json.dumps(big), token=writer)
        CHECK.check(first == 200 and status == 429 and code_of(body) == "rate_limited"
                    and json.loads(body)["error"].get("retry_after_ms", 0) > 0
                    and hdrs.get("Retry-After", "").isdigit()
                    and int(hdrs["Retry-After"]) * 1000 >= json.loads(body)["error"]["retry_after_ms"],
                    f"POST /api ingest past events/s: 200 then 429 + Retry-After, got {first}, "
                    f"{status} {body[:300]} {hdrs}")
        time.sleep(1.1)
        status, _, _ = http(node, "/api/v1/query?query=auth_m", token=http_user)
        CHECK.check(status == 200, f"after the window the requests pass again, got {status}")
        # NDJSON requests past the rate: one connection is slowed to the rate
        # (not refused: each request waits less than max-delay) ...
        with node.client(timeout=10) as c:
            c.request({"op": "auth", "token": calm})
            t0 = time.time()
            replies = c.pipeline([{"op": "metrics", "id": i} for i in range(15)], window=32)
            took = time.time() - t0
            CHECK.check(all(r.get("ok") for r in replies) and took >= 1.5,
                        f"NDJSON: 15 requests at 5/s on one connection are slowed, not "
                        f"refused: {took:.2f} s, {[r.get('ok') for r in replies]}")
        time.sleep(1.2)
        # ... several connections of one principal at once push the wait past
        # max-delay: rate_limited with retry_after_ms.
        conns = [node.client(timeout=10) for _ in range(4)]
        for c in conns:
            c.request({"op": "auth", "token": calm})
        time.sleep(1.1)
        for c in conns:
            c.send_lines([{"op": "metrics", "id": i} for i in range(5)])
        replies = [r for c in conns for r in c.read_n(5, timeout=10)]
        for c in conns:
            c.close()
        rl = [r for r in replies if r.get("error", {}).get("code") == "rate_limited"]
        CHECK.check(rl and all(r["error"]["retry_after_ms"] > 0 for r in rl)
                    and any(r.get("ok") for r in replies),
                    f"NDJSON: 4 connections of one principal: some rate_limited with "
                    f"retry_after_ms ({len(rl)} of {len(replies)})")
        time.sleep(1.2)
        # A flooding NDJSON client: 200k events at 20k/s with max-delay
        # 300 ms: slowed, then refused; another principal's ping latency
        # stays low meanwhile.
        total = 200000
        fl = node.client(timeout=30)
        fl.request({"op": "auth", "token": flood})
        payload = b"".join(h.encode({"metric": "auth.flood", "value": i}) for i in range(total))
        import threading
        sent = {}

        def pump():
            t0 = time.time()
            try:
                fl.send_raw(payload)
                fl.send_line({"op": "flush"})
            except OSError as e:
                sent["error"] = repr(e)
            sent["seconds"] = time.time() - t0

        th = threading.Thread(target=pump)
        th.start()
        latencies = []
        with node.client(timeout=10) as other:
            other.request({"op": "auth", "token": calm})
            time.sleep(1.1)  # calm's request bucket refills
            for _ in range(4):
                t0 = time.time()
                r = other.request({"op": "ping"})
                latencies.append(time.time() - t0)
                CHECK.check(r.get("ok"), f"the other client's ping: {r}")
                time.sleep(0.25)
        th.join(60)
        lines = []
        try:
            while True:
                obj = fl.read_json(timeout=5)
                lines.append(obj)
                if "accepted" in obj:
                    break
        except (TimeoutError, ConnectionError):
            pass
        fl.close()
        flush = lines[-1] if lines else {}
        refused = [x for x in lines if x.get("error", {}).get("code") == "rate_limited"]
        CHECK.check(flush.get("accepted", 0) > 0 and flush.get("accepted", 0) < total
                    and flush.get("accepted", 0) + flush.get("rejected", 0) == total,
                    f"flood: some accepted, the rest refused: {flush}")
        CHECK.check(refused and all(x["error"]["retry_after_ms"] > 0 and "line" in x for x in refused),
                    f"flood: rate_limited lines with retry_after_ms ({len(refused)})")
        CHECK.check(max(latencies) < 0.2, f"the other client's ping latency during the flood: {latencies}")
        status, body, _ = http(node, "/api", '{"op":"stats"}', token=http_user)
        st = json.loads(body) if status == 200 else {}
        mine = [p for p in st.get("auth", {}).get("principals", []) if p["principal"] == "flood"]
        CHECK.check(mine and mine[0]["events_limited"] > 0 and mine[0]["delayed"] > 0,
                    f"stats: the flood principal was delayed and limited: {mine} ({status})")
        time.sleep(1.1)
        status, body, _ = http(node, "/metrics", token=http_user)
        CHECK.check('cairn_rate_events_limited_total{principal="flood"}' in body
                    and 'cairn_rate_delayed_total{principal="flood"}' in body,
                    "/metrics: the flood principal's counters")
        # Recovery: a second later the flood principal is admitted again.
        time.sleep(1.0)
        with node.client(timeout=10) as c:
            c.request({"op": "auth", "token": flood})
            c.send_lines([{"metric": "auth.flood", "value": 1}] * 100)
            r = c.request({"op": "flush"})
            CHECK.check(r.get("accepted") == 100, f"after the window the flood principal is admitted: {r}")


def config_rules():
    h.log("== a non-loopback client port requires a key; influx TCP refused with auth")
    node = h.Node(ARGS.bin_dir, ARGS.source_dir, name="auth-cfg",
                  extra_args=["--cairn.tcp.host=0.0.0.0", "--cairn.storage.enabled=false"])
    p = subprocess.run(node.command(), capture_output=True, text=True, timeout=20, cwd=node.tmp)
    CHECK.check(p.returncode == 2 and "requires authentication" in p.stderr,
                f"0.0.0.0 without a key: exit 2 naming the rule, got {p.returncode} {p.stderr!r}")
    node.cleanup()
    node = h.Node(ARGS.bin_dir, ARGS.source_dir, name="auth-cfg2",
                  extra_args=["--cairn.auth.required=true",
                              f"--cairn.auth.secret-file={os.path.join(TMP, 'secret')}",
                              f"--cairn.influx.port={h.free_port()}"])
    p = subprocess.run(node.command(), capture_output=True, text=True, timeout=20, cwd=node.tmp)
    CHECK.check(p.returncode == 2 and "cairn.influx.port" in p.stderr,
                f"influx TCP with auth: exit 2, got {p.returncode} {p.stderr!r}")
    node.cleanup()


def main():
    global ARGS
    ARGS = h.parse_args(__doc__)
    try:
        matrix_hs256()
        public_keys()
        rate_limits()
        config_rules()
    except h.TestFailure as e:
        CHECK.check(False, str(e))
    return CHECK.summary()


if __name__ == "__main__":
    sys.exit(main())
