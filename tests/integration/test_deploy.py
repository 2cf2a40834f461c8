#!/usr/bin/env python3
"""Deployment files in deploy/ (docs/operations.md), checked without a
container engine or a Kubernetes cluster. Offline: the validators are the
packages scripts/install-deps.sh installed (tools/node_modules, golang-go,
systemd).

Checked:
  * Dockerfile: a build stage on debian:12 running scripts/install-deps.sh, a
    runtime stage on debian:12-slim whose apt package list is exactly the
    Debian packages of the shared libraries `ldd` reports for the binaries
    it copies (libc6 aside), a non-root USER, a data VOLUME, the config file
    in the ENTRYPOINT; its HEALTHCHECK command, run here against a real node
    started with deploy/cairn.ini, succeeds, and fails once the node is gone.
  * Helm chart deploy/helm/cairn, rendered by tools/helm-render (Go's
    text/template, the engine of `helm template`) with default and changed
    values: every document passes the Kubernetes schema (tools/k8s-check.mjs,
    kubernetes-models) and has no unknown field (tools/k8s-strict.py,
    python3-kubernetes); stable member names in cairn.cluster.nodes match the
    StatefulSet and headless Service; pods pass --cairn.node-name=$(POD_NAME)
    and their pod DNS name as cairn.cluster.host; TLS secret mounted; probes
    (readiness: /readyz, liveness: /healthz); the JWT secret mounted where
    cairn.ini's [cairn.auth] reads it; PDB; PVC size; replicas and partitions
    follow the values; >1 replica without a TLS secret fails, and so does a
    render without a JWT secret or with an unknown algorithm.
    deploy/kubernetes/cairn.yaml equals the default render.
  * deploy/cairn.ini (the image's) without its JWT secret: the node exits,
    naming cairn.auth.secret-file; with one: tokens are required, a token
    from `cairn-cli token` is accepted, /readyz and /healthz stay open.
  * The rendered cairn.ini starts a node (paths and ports moved to this
    machine, its cluster port bound to a host name with mutual TLS, which
    cairn-console reaches) whose readiness and liveness probes succeed and
    which wants a token for everything else.
  * compose.yaml: 3 nodes + console + certs; every node's flags are accepted
    by cairn-node (--dump-config) and name the right certificates and the
    JWT secret the certs service writes.
  * systemd unit: `systemd-analyze verify` passes.
"""

import base64
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cairn_harness as h  # noqa: E402

# tools/k8s-strict.py needs Debian's python3-kubernetes, i.e. Debian's Python.
SYSTEM_PYTHON = "/usr/bin/python3"


def node_tool(args, *cmd, stdin=None):
    tool = os.path.join(args.source_dir, "tools", "k8s-check.mjs")
    return subprocess.run(["node", tool, *cmd], capture_output=True, text=True,
                          input=stdin, timeout=120)


def yaml_docs(args, path):
    r = node_tool(args, "json", path)
    if r.returncode != 0:
        raise h.TestFailure(f"k8s-check json {path}: {r.stderr.strip()}")
    return json.loads(r.stdout)


# -- Dockerfile ---------------------------------------------------------------

def dockerfile_instructions(path):
    """[(stage index, INSTRUCTION, argument text)] with continuations joined."""
    out, stage, buf = [], -1, ""
    for raw in open(path, encoding="utf-8"):
        line = raw.rstrip("\n")
        if not buf and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if buf and line.lstrip().startswith("#"):
            continue
        buf += line.rstrip("\\") + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        word, _, rest = buf.strip().partition(" ")
        buf = ""
        if word.upper() == "FROM":
            stage += 1
        out.append((stage, word.upper(), rest.strip()))
    return out


def ldd_packages(binaries):
    libs, missing = set(), []
    for b in binaries:
        r = subprocess.run(["ldd", b], capture_output=True, text=True, timeout=30)
        for line in r.stdout.splitlines():
            if "not found" in line:
                missing.append(f"{os.path.basename(b)}: {line.strip()}")
            m = re.search(r"=>\s+(/\S+)", line)
            if m:
                libs.add(m.group(1))
    pkgs = {}
    for lib in sorted(libs):
        pkg = None
        for candidate in (lib, os.path.realpath(lib)):
            r = subprocess.run(["dpkg", "-S", candidate], capture_output=True,
                               text=True, timeout=30)
            if r.returncode == 0:
                pkg = r.stdout.split(":")[0].strip()
                break
        pkgs[lib] = pkg
    return pkgs, missing


def check_dockerfile(args, chk):
    path = os.path.join(args.source_dir, "deploy", "Dockerfile")
    ins = dockerfile_instructions(path)
    froms = [a for s, i, a in ins if i == "FROM"]
    chk.require(len(froms) == 2, f"Dockerfile: expected 2 stages, got FROM {froms}")
    chk.check(froms[0].split()[0] == "debian:12" and froms[0].split()[-1] == "build",
              f"build stage is not 'debian:12 AS build': {froms[0]}")
    chk.check(froms[1].split()[0] == "debian:12-slim",
              f"runtime stage is not on debian:12-slim: {froms[1]}")
    build_runs = " ".join(a for s, i, a in ins if s == 0 and i == "RUN")
    chk.check("scripts/install-deps.sh" in build_runs,
              "build stage does not run scripts/install-deps.sh")
    # The dashboard's chart library: web/'s lock file reaches install-deps.sh
    # (npm ci there) before it runs, and the host's node_modules stays out.
    build_copies = [a for s, i, a in ins if s == 0 and i == "COPY"]
    chk.check(any("web/package-lock.json" in a for a in build_copies[:2]),
              f"build stage does not copy web/package-lock.json before install-deps: {build_copies}")
    ignore = open(os.path.join(args.source_dir, ".dockerignore"), encoding="utf-8").read().split()
    chk.check("web/node_modules/" in ignore, ".dockerignore does not exclude web/node_modules/")
    rt = [(i, a) for s, i, a in ins if s == 1]
    users = [a for i, a in rt if i == "USER"]
    chk.check(users and not users[-1].startswith(("root", "0")),
              f"runtime stage does not end as a non-root USER: {users}")
    chk.check(any(i == "VOLUME" and "/var/lib/cairn" in a for i, a in rt),
              "runtime stage has no VOLUME /var/lib/cairn")
    entry = [a for i, a in rt if i == "ENTRYPOINT"]
    chk.check(entry and "--config-file=/etc/cairn/cairn.ini" in entry[-1],
              f"ENTRYPOINT does not read /etc/cairn/cairn.ini: {entry}")
    health = [a for i, a in rt if i == "HEALTHCHECK"]
    chk.require(len(health) == 1 and "/healthz" in health[0],
                f"runtime stage needs one HEALTHCHECK on /healthz: {health}")

    # The runtime package list against ldd of the binaries it copies.
    copies = " ".join(a for i, a in rt if i == "COPY" and a.startswith("--from=build"))
    names = sorted(set(re.findall(r"/src/build/apps/(cairn-[a-z]+)", copies)))
    chk.check(names == ["cairn-bench", "cairn-cli", "cairn-console", "cairn-node"],
              f"runtime stage copies binaries {names}")
    text = open(path, encoding="utf-8").read()
    block = re.search(r"# runtime-packages-begin\n(.*?)# runtime-packages-end", text, re.S)
    chk.require(block is not None, "Dockerfile lacks the runtime-packages markers")
    body = block.group(1).replace("\\\n", " ")
    m = re.search(r"--no-install-recommends(.*?)&&", body, re.S)
    chk.require(m is not None, "runtime apt-get install line not found")
    listed = set(m.group(1).split())
    bins = [os.path.join(args.bin_dir, n) for n in names]
    pkgs, missing = ldd_packages(bins)
    chk.check(not missing, f"ldd: unresolved libraries {missing}")
    unknown = [lib for lib, p in pkgs.items() if p is None]
    chk.check(not unknown, f"libraries not from a Debian package: {unknown}")
    needed = {p for p in pkgs.values() if p} - {"libc6"}
    chk.check(listed == needed,
              f"runtime packages differ from ldd: missing {sorted(needed - listed)}, "
              f"extra {sorted(listed - needed)}")
    h.log(f"runtime stage: {len(listed)} packages = ldd of {len(bins)} binaries "
          f"({len(pkgs)} libraries)")
    return json.loads(health[0][health[0].index("CMD") + 3:].strip())


def run_probe(cmd, env_extra=None, path_dirs=()):
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join(list(path_dirs) + [env.get("PATH", "")])
    env.update(env_extra or {})
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=15, env=env)
        return r.returncode, (r.stdout + r.stderr).strip()
    except subprocess.TimeoutExpired:
        return None, "timeout"


def jwt_secret(tmp):
    path = os.path.join(tmp, "jwt-secret")
    if not os.path.exists(path):
        with open(path, "w", encoding="utf-8") as f:
            f.write(base64.b64encode(os.urandom(48)).decode() + "\n")
        os.chmod(path, 0o600)
    return path


def mint(args, secret, scopes):
    r = subprocess.run([os.path.join(args.bin_dir, "cairn-cli"), f"--key-file={secret}",
                        "--ttl=10m", "token", "deploy-test", scopes],
                       capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise h.TestFailure(f"cairn-cli token: exit {r.returncode}: {r.stderr}")
    return r.stdout.strip()


def api_status(node, token=None, path="/api", body=b'{"op":"stats"}'):
    req = urllib.request.Request(f"http://127.0.0.1:{node.http_port}{path}",
                                 data=body if path == "/api" else None)
    if token:
        req.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def check_tokens_required(args, chk, node, secret, what):
    """A node set up as deployed: anonymous calls refused, a minted token
    accepted, the probes open."""
    chk.check(api_status(node) == 401, f"{what}: POST /api without a token is not refused")
    token = mint(args, secret, "query")
    chk.check(api_status(node, token) == 200, f"{what}: a cairn-cli token is refused")
    chk.check(api_status(node, path="/readyz") == 200, f"{what}: /readyz needs a token")
    chk.check(api_status(node, path="/healthz") == 200, f"{what}: /healthz needs a token")
    return token


def check_image_config_and_healthcheck(args, chk, health_cmd, tmp):
    """deploy/cairn.ini on this machine: loopback, free ports, a temp data dir."""
    cfg = os.path.join(args.source_dir, "deploy", "cairn.ini")
    tcp, http_port, cluster = h.free_ports(3)
    data = os.path.join(tmp, "img-nosecret")
    # As shipped (client ports on every interface), with no secret mounted.
    r = h.run_bounded([os.path.join(args.bin_dir, "cairn-node"), f"--config-file={cfg}",
                       f"--cairn.tcp.port={tcp}", f"--cairn.http.port={http_port}",
                       f"--cairn.cluster.port={cluster}", f"--cairn.storage.path={data}"],
                      timeout=30)
    out = (r.stdout + r.stderr).decode("utf-8", "replace")
    chk.check(r.returncode not in (0, None) and "cairn.auth.secret-file" in out
              and "/etc/cairn/jwt/secret" in out,
              f"image config without its JWT secret: exit {r.returncode}, {out.strip()[-300:]}")
    secret = jwt_secret(tmp)
    node = h.Node(args.bin_dir, args.source_dir, name="img", config=cfg,
                  base_args=False, keep=args.keep,
                  extra_args=["--cairn.tcp.host=127.0.0.1",
                              # loopback here; as in the image, tokens are required
                              "--cairn.auth.required=true",
                              f"--cairn.auth.secret-file={secret}",
                              f"--cairn.http.web-root={args.source_dir}/web"])
    try:
        node.start()
        node.wait_ready(30)
        env = {"CAIRN_HTTP_PORT": str(node.http_port)}
        code, out = run_probe(health_cmd, env)
        chk.check(code == 0, f"HEALTHCHECK {health_cmd} exit {code}: {out}")
        check_tokens_required(args, chk, node, secret, "image config")
        with urllib.request.urlopen(f"http://127.0.0.1:{node.http_port}/", timeout=5) as r:
            chk.check(r.status == 200 and b"<" in r.read(200),
                      "dashboard not served with the image's config")
        lib = f"http://127.0.0.1:{node.http_port}/node_modules/uplot/dist/uPlot.iife.min.js"
        with urllib.request.urlopen(lib, timeout=5) as r:
            chk.check(r.status == 200 and b"uPlot" in r.read(),
                      "the dashboard's chart library is not served (npm ci in web/)")
        node.stop()
        code, out = run_probe(health_cmd, env)
        chk.check(code not in (0, None), f"HEALTHCHECK passes with no node: exit {code}")
        h.log("image config: exits naming its missing JWT secret; with it: tokens required, "
              "a cairn-cli token accepted, HEALTHCHECK ok while up, fails once stopped")
    except h.TestFailure as e:
        chk.check(False, f"image config: {e}")
        node.dump_log(60)
    finally:
        node.cleanup()


# -- Helm chart ---------------------------------------------------------------

def deep_merge(base, over):
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Renderer:
    def __init__(self, args, tmp):
        self.args = args
        self.tmp = tmp
        self.chart = os.path.join(args.source_dir, "deploy", "helm", "cairn")
        self.exe = os.path.join(tmp, "helm-render")
        env = dict(os.environ, GO111MODULE="off", GOCACHE=os.path.join(tmp, "gocache"),
                   GOPATH=os.path.join(tmp, "gopath"), GOFLAGS="", CGO_ENABLED="0")
        r = subprocess.run(["go", "build", "-o", self.exe,
                            os.path.join(args.source_dir, "tools", "helm-render", "main.go")],
                           capture_output=True, text=True, timeout=300, env=env,
                           cwd=args.source_dir)
        if r.returncode != 0:
            raise h.TestFailure(f"go build tools/helm-render: {r.stderr.strip()}")
        self.chart_meta = yaml_docs(args, os.path.join(self.chart, "Chart.yaml"))[0]
        self.values = yaml_docs(args, os.path.join(self.chart, "values.yaml"))[0]

    def render(self, overrides=None, name="cairn"):
        inp = {"chart": self.chart_meta,
               "values": deep_merge(self.values, overrides or {}),
               "release": {"name": name, "namespace": "default"}}
        path = os.path.join(self.tmp, "input.json")
        with open(path, "w") as f:
            json.dump(inp, f)
        r = subprocess.run([self.exe, self.chart, path], capture_output=True,
                           text=True, timeout=60)
        return r.returncode, r.stdout, r.stderr.strip()


def validate(args, chk, text, what):
    r = node_tool(args, "validate", "-", stdin=text)
    try:
        res = json.loads(r.stdout)
    except ValueError:
        chk.check(False, f"{what}: k8s-check output {r.stdout[:300]!r} {r.stderr[:300]!r}")
        return None
    chk.check(r.returncode == 0 and not res["errors"],
              f"{what}: schema errors {res['errors']}")
    # The schemas allow extra properties: unknown fields separately.
    strict = strict_check(args, text)
    chk.check(strict.returncode == 0, f"{what}: unknown fields: {strict.stdout.strip()}")
    return res


def strict_check(args, text):
    docs = node_tool(args, "json", "-", stdin=text)
    if docs.returncode != 0:
        return subprocess.CompletedProcess([], 1, docs.stderr, "")
    return subprocess.run([SYSTEM_PYTHON, os.path.join(args.source_dir, "tools", "k8s-strict.py")],
                          input=docs.stdout, capture_output=True, text=True, timeout=120)


def by_kind(docs):
    out = {}
    for d in docs:
        out.setdefault(d["kind"], []).append(d)
    return out


def ini_value(ini, section, key):
    sec = None
    for line in ini.splitlines():
        s = line.strip()
        if s.startswith("["):
            sec = s.strip("[]")
        elif sec == section and "=" in s and s.split("=", 1)[0].strip() == key:
            return s.split("=", 1)[1].strip()
    return None


def run_init(chk, init, headless, cm, pod, tmp):
    """The init container's command for pod `pod`, its DNS name resolving
    here and its two mounts in `tmp`: returns the cairn.ini it picked."""
    conf, role = os.path.join(tmp, "cairn-config"), os.path.join(tmp, "run-cairn")
    for d in (conf, role):
        shutil.rmtree(d, ignore_errors=True)
        os.makedirs(d)
    for key, text in cm["data"].items():
        write(conf, key, text)
    cmd = [a.replace(f'$POD_NAME.{headless}', "localhost")
            .replace("/etc/cairn-config", conf).replace("/run/cairn", role)
           for a in init["command"]]
    code, out = run_probe(cmd, env_extra={"POD_NAME": pod})
    chk.check(code == 0, f"init command for {pod} {cmd}: exit {code} {out}")
    try:
        return open(os.path.join(role, "cairn.ini"), encoding="utf-8").read()
    except OSError:
        return None


def cluster_lines_removed(ini):
    """cairn.ini without its comments and its nodes/seeds lines."""
    return [line for line in ini.splitlines() if not line.strip().startswith(";")
            and not re.match(r"\s*(nodes|seeds)\s*=", line)]


def check_render(args, chk, docs, replicas, partitions, size, tls=True, jwt="cairn-jwt",
                 founders=None, tmp=None):
    founders = replicas if founders is None else founders
    k = by_kind(docs)
    sts = k.get("StatefulSet", [None])[0]
    chk.require(sts is not None, "no StatefulSet rendered")
    name = sts["metadata"]["name"]
    spec = sts["spec"]
    chk.check(spec["replicas"] == replicas, f"replicas {spec['replicas']} != {replicas}")
    headless = [s for s in k.get("Service", []) if s["spec"].get("clusterIP") == "None"]
    chk.require(len(headless) == 1, "no headless Service")
    hl = headless[0]
    chk.check(spec["serviceName"] == hl["metadata"]["name"],
              f"serviceName {spec['serviceName']} != headless {hl['metadata']['name']}")
    chk.check(hl["spec"].get("publishNotReadyAddresses") is True,
              "headless Service does not publish not-ready pods")
    labels = spec["template"]["metadata"]["labels"]
    for svc in k.get("Service", []):
        chk.check(all(labels.get(a) == b for a, b in svc["spec"]["selector"].items()),
                  f"Service {svc['metadata']['name']} selects other pods")
    cm = k["ConfigMap"][0]
    ini = cm["data"]["cairn.ini"]
    chk.check(ini_value(ini, "cairn", "partitions") == str(partitions),
              f"partitions in cairn.ini: {ini_value(ini, 'cairn', 'partitions')}")
    nodes = ini_value(ini, "cairn.cluster", "nodes")
    c = spec["template"]["spec"]["containers"][0]
    cargs = c.get("args", [])
    chk.check("--cairn.node-name=$(POD_NAME)" in cargs, f"args lack node-name: {cargs}")
    chk.check(any(e["name"] == "POD_NAME" and e["valueFrom"]["fieldRef"]["fieldPath"]
                  == "metadata.name" for e in c.get("env", [])), "POD_NAME not from metadata.name")
    port = ini_value(ini, "cairn.cluster", "port")
    if replicas > 1:
        members = json.loads(nodes) if nodes else []
        want = [f"{name}-{i}@{name}-{i}.{hl['metadata']['name']}:{port}" for i in range(founders)]
        chk.check(members == want, f"cairn.cluster.nodes {members} != {want}")
        joiner = cm["data"].get("joiner.ini")
        chk.check((joiner is not None) == (replicas > founders),
                  f"joiner.ini rendered: {joiner is not None}, {replicas} pods, {founders} founders")
        if joiner is not None:
            seeds = json.loads(ini_value(joiner, "cairn.cluster", "seeds") or "[]")
            want = [f"{name}-{i}.{hl['metadata']['name']}:{port}" for i in range(founders)]
            chk.check(seeds == want, f"joiner.ini seeds {seeds} != {want}")
            chk.check(ini_value(joiner, "cairn.cluster", "nodes") is None,
                      "joiner.ini still lists nodes")
            chk.check(cluster_lines_removed(joiner) == cluster_lines_removed(ini),
                      "joiner.ini differs from cairn.ini beyond nodes/seeds")
        chk.check("--config-file=/run/cairn/cairn.ini" in cargs,
                  f"args do not read the picked config: {cargs}")
        chk.check(f"--cairn.cluster.host=$(POD_NAME).{hl['metadata']['name']}" in cargs,
                  f"args lack the pod DNS name as cluster host: {cargs}")
        for key in ("tls-certificate", "tls-key", "tls-ca-file"):
            chk.check(ini_value(ini, "cairn.cluster", key) is not None, f"cairn.ini lacks {key}")
        mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
        vols = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
        chk.check(mounts.get("tls") == "/etc/cairn/tls" and "secret" in vols.get("tls", {}),
                  "TLS secret not mounted at /etc/cairn/tls")
        init = spec["template"]["spec"].get("initContainers", [])
        wait = " ".join(init[0]["command"]) if init else ""
        chk.check(f'getent hosts "$POD_NAME.{hl["metadata"]["name"]}"' in wait,
                  f"no init container waiting for the pod's DNS name: {wait}")
        if init and tmp:  # the same command, for a name that resolves here
            for i in sorted({0, founders - 1, min(founders, replicas - 1), replicas - 1}):
                got = run_init(chk, init[0], hl["metadata"]["name"], cm, f"{name}-{i}", tmp)
                want = cm["data"]["joiner.ini" if i >= founders else "cairn.ini"]
                chk.check(got == want, f"pod {name}-{i}: the init container picked "
                                       f"{'another' if got else 'no'} cairn.ini")
            mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
            chk.check(mounts.get("role") == "/run/cairn",
                      f"the picked config is not mounted at /run/cairn: {mounts}")
        pdb = k.get("PodDisruptionBudget", [])
        chk.check(len(pdb) == 1 and pdb[0]["spec"].get("maxUnavailable") == 1,
                  f"PodDisruptionBudget: {pdb}")
    else:
        chk.check(nodes is None, f"single replica still lists nodes: {nodes}")
        chk.check("PodDisruptionBudget" not in k, "single replica has a PDB")
    vols = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    chk.check(vols.get("jwt", {}).get("secret", {}).get("secretName") == jwt,
              f"JWT secret {jwt} not mounted")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    key = ini_value(ini, "cairn.auth", "secret-file") or ini_value(ini, "cairn.auth",
                                                                   "public-key-file")
    chk.check(mounts.get("jwt") == "/etc/cairn/jwt" and key is not None
              and key.strip('"').startswith("/etc/cairn/jwt/"),
              f"cairn.ini's JWT key {key} is not in the mounted secret")
    ready = c["readinessProbe"].get("httpGet", {})
    chk.check(ready.get("path") == "/readyz" and ready.get("port") == "http",
              f"readiness is not GET /readyz: {c['readinessProbe']}")
    chk.check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness not /healthz")
    pvc = spec["volumeClaimTemplates"][0]
    chk.check(pvc["spec"]["resources"]["requests"]["storage"] == size,
              f"PVC size {pvc['spec']['resources']['requests']['storage']} != {size}")
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    chk.check(mounts.get(pvc["metadata"]["name"]) == "/var/lib/cairn",
              "the PVC is not mounted at /var/lib/cairn")
    req = c["resources"]["requests"]
    chk.check("memory" in req and "cpu" in req, f"resource requests: {req}")
    sc = spec["template"]["spec"]["securityContext"]
    chk.check(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "pods run as root")
    return sts, ini


def check_helm(args, chk, tmp):
    rnd = Renderer(args, tmp)
    code, text, err = rnd.render()
    chk.require(code == 0, f"default render failed: {err}")
    res = validate(args, chk, text, "default render")
    if res:
        h.log(f"default render: {res['documents']} documents valid ({', '.join(res['kinds'])})")
    docs = yaml_docs(args, write(tmp, "default.yaml", text))
    sts, ini = check_render(args, chk, docs, 3, 16, "10Gi", tmp=tmp)

    static = os.path.join(args.source_dir, "deploy", "kubernetes", "cairn.yaml")
    body = open(static, encoding="utf-8").read()
    body = body[body.index("---"):] if "---" in body else body
    chk.check(body.strip() == text.strip(),
              "deploy/kubernetes/cairn.yaml differs from the chart's default render "
              "(regenerate it as docs/operations.md says)")
    validate(args, chk, open(static, encoding="utf-8").read(), "deploy/kubernetes/cairn.yaml")

    over = {"replicas": 5, "partitions": 32, "storage": {"size": "50Gi"},
            "jwt": {"existingSecret": "my-jwt", "algorithm": "ES256"},
            "tls": {"existingSecret": "my-tls"}}
    code, text5, err = rnd.render(over, name="analytics")
    chk.require(code == 0, f"render with 5 replicas failed: {err}")
    validate(args, chk, text5, "5-replica render")
    _, ini5 = check_render(args, chk, yaml_docs(args, write(tmp, "five.yaml", text5)), 5, 32,
                           "50Gi", jwt="my-jwt", founders=3, tmp=tmp)
    chk.check("secretName: my-tls" in text5, "tls.existingSecret not used")
    chk.check(ini_value(ini5, "cairn.auth", "algorithm") == '"ES256"'
              and ini_value(ini5, "cairn.auth", "public-key-file") is not None
              and ini_value(ini5, "cairn.auth", "secret-file") is None,
              f"jwt.algorithm ES256: cairn.ini's [cairn.auth] {ini5}")

    code, text4, err = rnd.render({"replicas": 4})
    chk.require(code == 0, f"render with 4 replicas of 3 initial members failed: {err}")
    docs4 = yaml_docs(args, write(tmp, "four.yaml", text4))
    check_render(args, chk, docs4, 4, 16, "10Gi", founders=3, tmp=tmp)
    joiner = by_kind(docs4)["ConfigMap"][0]["data"]["joiner.ini"]

    code, text1, err = rnd.render({"replicas": 1, "initialMembers": 1,
                                   "tls": {"existingSecret": ""}})
    chk.require(code == 0, f"render with 1 replica failed: {err}")
    validate(args, chk, text1, "1-replica render")
    check_render(args, chk, yaml_docs(args, write(tmp, "one.yaml", text1)), 1, 16, "10Gi",
                 tls=False)

    code, _, err = rnd.render({"replicas": 2})
    chk.check(code != 0 and "initialMembers" in err,
              f"2 replicas of 3 initial members rendered (exit {code}, {err!r})")
    code, _, err = rnd.render({"replicas": 3, "initialMembers": 1})
    chk.check(code != 0 and "single node cannot be joined" in err,
              f"3 pods joining a single node rendered (exit {code}, {err!r})")
    code, _, err = rnd.render({"tls": {"existingSecret": ""}})
    chk.check(code != 0 and "tls.existingSecret" in err,
              f"3 replicas without TLS rendered (exit {code}, {err!r})")
    code, _, err = rnd.render({"jwt": {"existingSecret": ""}})
    chk.check(code != 0 and "jwt.existingSecret" in err,
              f"a render without a JWT secret succeeded (exit {code}, {err!r})")
    code, _, err = rnd.render({"jwt": {"algorithm": "none"}})
    chk.check(code != 0 and "jwt.algorithm" in err,
              f"jwt.algorithm none rendered (exit {code}, {err!r})")

    # The validators themselves must catch a broken manifest.
    broken = text.replace("containerPort: 7411", 'containerPort: "tcp"', 1)
    r = node_tool(args, "validate", "-", stdin=broken)
    chk.check(r.returncode != 0 and "containerPort" in r.stdout,
              f"k8s-check accepted a string containerPort: {r.stdout[:300]}")
    r = strict_check(args, text.replace("readinessProbe:", "readinesProbe:", 1))
    chk.check(r.returncode != 0 and "readinesProbe: unknown field" in r.stdout,
              f"k8s-strict accepted a misspelt field: {r.stdout[:300]}")
    return sts, ini, joiner


def write(tmp, name, text):
    path = os.path.join(tmp, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
    return path


def pod_node(args, tmp, sts, ini, pod, certs):
    """A node of pod `pod` from a rendered cairn.ini and the pod's flags,
    moved to loopback (files here, the cluster host `localhost`)."""
    ini = (ini.replace("/etc/cairn/tls/tls.crt", f"{certs}/n1.pem")
              .replace("/etc/cairn/tls/tls.key", f"{certs}/n1.key")
              .replace("/etc/cairn/tls/ca.crt", f"{certs}/ca.pem")
              .replace("/usr/share/cairn/web", f"{args.source_dir}/web")
              .replace("/etc/cairn/jwt/secret", jwt_secret(tmp)))
    cfg = write(tmp, f"rendered-{pod}.ini", ini)
    c = sts["spec"]["template"]["spec"]["containers"][0]
    pod_args = [a.replace("$(POD_NAME)", pod) for a in c["args"]
                if not a.startswith(("--cairn.node-name=", "--config-file="))]
    # Bind loopback here (the pod binds its DNS name); names/ports as rendered otherwise.
    pod_args = [a for a in pod_args if not a.startswith("--cairn.cluster.host=")]
    return h.Node(args.bin_dir, args.source_dir, name=pod, config=cfg,
                  base_args=False, keep=args.keep,
                  extra_args=pod_args + ["--cairn.tcp.host=127.0.0.1",
                                         # loopback here, so ask for what the pod
                                         # address implies: tokens
                                         "--cairn.auth.required=true",
                                         # a host name, as in the pod (there: its DNS name)
                                         "--cairn.cluster.host=localhost"])


def check_joiner_joins(args, chk, tmp, sts, joiner, founder, certs):
    """Pod cairn-3 of a 4-pod render (3 initial members) from its joiner.ini,
    its seeds pointed at the running cairn-0: it is admitted and ready, and
    cairn-0 lists it as a member."""
    seeds = ini_value(joiner, "cairn.cluster", "seeds")
    joiner = joiner.replace(f"seeds = {seeds}",
                            f'seeds = ["localhost:{founder.cluster_port}"]')
    node = pod_node(args, tmp, sts, joiner, "cairn-3", certs)
    try:
        node.start()
        ping = node.wait_ready(60)
        chk.check(ping.get("node") == "cairn-3", f"joiner ping: {ping}")
        token = mint(args, jwt_secret(tmp), "admin")
        names = []
        deadline = time.time() + 30
        while time.time() < deadline and "cairn-3" not in names:
            with founder.client(10) as cl:
                cl.request({"op": "auth", "token": token})
                r = cl.request({"op": "cluster"})
            names = [m.get("name") for m in r.get("members", [])]
            time.sleep(0.5)
        chk.check(names == ["cairn-0", "cairn-1", "cairn-2", "cairn-3"],
                  f"cairn-0's members after the join: {names}")
        h.log(f"rendered joiner.ini: cairn-3 joined through cairn-0's cluster port; "
              f"members {names}")
    except h.TestFailure as e:
        chk.check(False, f"rendered joiner.ini: {e}")
        node.dump_log(60)
    finally:
        node.cleanup()


def check_rendered_config_runs(args, chk, tmp, sts, ini, joiner):
    """The ConfigMap's cairn.ini with the pod's flags, moved to loopback; then
    a joiner's joiner.ini joining it."""
    certs = os.path.join(tmp, "certs")
    r = subprocess.run(["bash", os.path.join(args.source_dir, "scripts", "gen-certs.sh"),
                        certs, "1"], capture_output=True, text=True, timeout=120)
    chk.require(r.returncode == 0, f"gen-certs.sh: {r.stderr}")
    c = sts["spec"]["template"]["spec"]["containers"][0]
    node = pod_node(args, tmp, sts, ini, "cairn-0", certs)
    try:
        node.start()
        ping = node.wait_ready(30)
        chk.check(ping.get("node") == "cairn-0", f"ping: {ping}")
        check_tokens_required(args, chk, node, jwt_secret(tmp), "rendered config")
        with node.client(10) as cl:
            refused = cl.request({"op": "cluster"})
            chk.check(refused.get("error", {}).get("code") == "unauthorized",
                      f"NDJSON without a token: {refused}")
        with node.client(10) as cl:
            auth = cl.request({"op": "auth", "token": mint(args, jwt_secret(tmp), "admin")})
            chk.check(auth.get("ok") is True, f"auth with an admin token: {auth}")
            r = cl.request({"op": "cluster"})
        names = [m.get("name") for m in r.get("members", [])]
        chk.check(names == ["cairn-0", "cairn-1", "cairn-2"], f"cluster members {names}")
        # The cluster port listens on the host name, with mutual TLS.
        console = h.run_bounded([os.path.join(args.bin_dir, "cairn-console"),
                                 f"--connect=localhost:{node.cluster_port}",
                                 f"--openssl.certificate={certs}/n1.pem",
                                 f"--openssl.key={certs}/n1.key",
                                 f"--openssl.cafile={certs}/ca.pem",
                                 "--timeout=10", "--exec=ping"], timeout=30)
        out = (console.stdout + console.stderr).decode("utf-8", "replace")
        chk.check(console.returncode == 0 and "cairn-0" in out,
                  f"cairn-console over TLS to localhost: exit {console.returncode}: {out[-400:]}")
        for kind in ("readinessProbe", "livenessProbe"):
            path = c[kind]["httpGet"]["path"]
            chk.check(api_status(node, path=path) == 200, f"{kind} {path} fails on a ready node")
        ready_path = c["readinessProbe"]["httpGet"]["path"]
        check_joiner_joins(args, chk, tmp, sts, joiner, node, certs)
        node.stop()
        try:
            code = api_status(node, path=ready_path)
        except OSError:
            code = None
        chk.check(code is None, f"readiness probe answers {code} with no node")
        h.log("rendered cairn.ini: node cairn-0 of [cairn-0,cairn-1,cairn-2] ready over "
              "TLS config; readiness and liveness probes pass, readiness fails once stopped")
    except h.TestFailure as e:
        chk.check(False, f"rendered config: {e}")
        node.dump_log(60)
    finally:
        node.cleanup()


# -- compose and systemd ------------------------------------------------------

def check_compose(args, chk):
    path = os.path.join(args.source_dir, "deploy", "compose.yaml")
    doc = yaml_docs(args, path)[0]
    svc = doc.get("services", {})
    chk.require({"n1", "n2", "n3", "console", "certs"} <= set(svc),
                f"compose services: {sorted(svc)}")
    binary = os.path.join(args.bin_dir, "cairn-node")
    cfg = os.path.join(args.source_dir, "deploy", "cairn.ini")
    members = None
    for n in ("n1", "n2", "n3"):
        s = svc[n]
        flags = s.get("command", [])
        chk.check(f"--cairn.node-name={n}" in flags and f"--cairn.cluster.host={n}" in flags,
                  f"{n}: node-name/cluster.host flags {flags}")
        chk.check(f"--cairn.cluster.tls-certificate=/certs/{n}.pem" in flags
                  and f"--cairn.cluster.tls-key=/certs/{n}.key" in flags,
                  f"{n}: not its own certificate")
        chk.check("--cairn.auth.secret-file=/certs/jwt-secret" in flags,
                  f"{n}: no JWT secret (its client ports bind the container address)")
        nodes = [f for f in flags if f.startswith("--cairn.cluster.nodes=")]
        chk.check(len(nodes) == 1, f"{n}: nodes flag {nodes}")
        if members is None and nodes:
            members = nodes[0]
        chk.check(nodes and nodes[0] == members, f"{n}: different member list")
        chk.check(s.get("depends_on", {}).get("certs", {}).get("condition")
                  == "service_completed_successfully", f"{n}: does not wait for certs")
        chk.check(all(p.startswith("127.0.0.1:") for p in s.get("ports", [])),
                  f"{n}: ports published beyond loopback {s.get('ports')}")
        chk.check(any(v.endswith(":/var/lib/cairn") for v in s.get("volumes", [])),
                  f"{n}: no data volume")
        r = h.run_bounded([binary, f"--config-file={cfg}", *flags, "--dump-config"], timeout=20)
        out = (r.stdout + r.stderr).decode("utf-8", "replace")
        chk.check(r.returncode == 0 and "n3@n3:7400" in out,
                  f"{n}: cairn-node refuses the compose flags: {out.strip()[-300:]}")
    chk.check(members and json.loads(members.split("=", 1)[1])
              == ["n1@n1:7400", "n2@n2:7400", "n3@n3:7400"], f"members {members}")
    gen = " ".join(svc["certs"].get("command", []))
    chk.check("gen-certs.sh /certs 3" in gen and "10001" in gen
              and "/certs/jwt-secret" in gen, f"certs command {gen}")
    # The certs service's command, run here: certificates and a secret a node takes.
    certs = tempfile.mkdtemp(prefix="cairn-it-compose-certs-")
    try:
        cmd = [a.replace("/certs", certs).replace("chown -R 10001:10001", "true")
               for a in svc["certs"]["command"]]
        r = subprocess.run(cmd, cwd=args.source_dir, capture_output=True, text=True,
                           timeout=120)
        secret = os.path.join(certs, "jwt-secret")
        chk.check(r.returncode == 0 and os.path.exists(os.path.join(certs, "n3.pem"))
                  and os.path.exists(secret)
                  and (os.stat(secret).st_mode & 0o077) == 0
                  and len(open(secret, encoding="utf-8").read().strip()) >= 32,
                  f"certs command here: exit {r.returncode} {r.stderr[-300:]}")
        if os.path.exists(secret):
            mint(args, secret, "ingest,query,admin")
    finally:
        shutil.rmtree(certs, ignore_errors=True)
    entry = svc["console"].get("entrypoint", [])
    chk.check(entry[:1] == ["/usr/local/bin/cairn-console"] and "--connect=n1:7400" in entry
              and any(e.startswith("--openssl.certificate=") for e in entry),
              f"console entrypoint {entry}")
    h.log("compose: 3 nodes with TLS flags accepted by cairn-node, console, certs")


def check_systemd(args, chk, tmp):
    unit = os.path.join(args.source_dir, "deploy", "systemd", "cairn-node.service")
    text = open(unit, encoding="utf-8").read()
    chk.check("StateDirectory=cairn" in text and "--config-file=/etc/cairn/cairn.ini" in text,
              "unit lacks StateDirectory=cairn or the config file")
    chk.check("DynamicUser=yes" in text or re.search(r"^User=(?!root)", text, re.M),
              "unit runs as root")
    if shutil.which("systemd-analyze") is None:
        chk.check(False, "systemd-analyze missing (scripts/install-deps.sh installs systemd)")
        return
    local = write(tmp, "cairn-node.service",
                  text.replace("/usr/local/bin/cairn-node", os.path.join(args.bin_dir, "cairn-node")))
    r = subprocess.run(["systemd-analyze", "verify", local], capture_output=True, text=True,
                       timeout=60)
    out = (r.stdout + r.stderr).strip()
    chk.check(r.returncode == 0 and not out, f"systemd-analyze verify: exit {r.returncode} {out}")
    h.log("systemd unit: systemd-analyze verify clean")


def main():
    args = h.parse_args(__doc__)
    chk = h.Checker("test_deploy")
    tmp = tempfile.mkdtemp(prefix="cairn-it-deploy-")
    try:
        for tool in ("node", "go", "ldd", "dpkg", SYSTEM_PYTHON):
            chk.require(shutil.which(tool) is not None,
                        f"{tool} not found (scripts/install-deps.sh installs it)")
        chk.require(os.path.isdir(os.path.join(args.source_dir, "tools", "node_modules")),
                    "tools/node_modules missing: run scripts/install-deps.sh")
        health = None
        sts = ini = joiner = None
        for name, fn in [("Dockerfile", lambda: check_dockerfile(args, chk)),
                         ("Helm chart", lambda: check_helm(args, chk, tmp)),
                         ("compose", lambda: check_compose(args, chk)),
                         ("systemd", lambda: check_systemd(args, chk, tmp))]:
            h.log(f"-- {name}")
            try:
                result = fn()
                if name == "Dockerfile":
                    health = result
                if name == "Helm chart":
                    sts, ini, joiner = result
            except (h.TestFailure, OSError, ValueError, KeyError, IndexError) as e:
                chk.check(False, f"{name}: {e!r}")
        if health:
            h.log("-- image config and HEALTHCHECK")
            check_image_config_and_healthcheck(args, chk, health, tmp)
        if sts:
            h.log("-- rendered config on a real node")
            try:
                check_rendered_config_runs(args, chk, tmp, sts, ini, joiner)
            except (h.TestFailure, OSError, KeyError) as e:
                chk.check(False, f"rendered config: {e!r}")
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    return chk.summary()


if __name__ == "__main__":
    h.main_wrapper(main)
