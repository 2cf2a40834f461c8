#!/usr/bin/env bash
# Installs every Debian package Cairn needs to build, test and run.
# Idempotent and non-interactive; safe to run repeatedly.
#   CAIRN_DEPS=build  only what building the binaries needs (the container's
#                     build stage, deploy/Dockerfile); default: everything,
#                     including the tools the tests and tutorials use.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libcaf-dev libboost-dev libboost-system-dev
  nlohmann-json3-dev libsimdjson-dev doctest-dev
  libssl-dev libleveldb-dev libsnappy-dev libprotobuf-dev protobuf-compiler zlib1g-dev libspdlog-dev libfmt-dev libjwt-dev libxxhash-dev
  libreadline-dev libbenchmark-dev
  netcat-openbsd python3 tmux expect procps openssl
  nodejs  # npm ci of web/: the dashboard's chart library
)
if [ "${CAIRN_DEPS:-all}" != "build" ]; then
  # Tests and tutorials: curl and Go for docs/tutorial.md, Node.js for it and
  # for the manifest validators in tools/, python3-kubernetes for
  # tools/k8s-strict.py, systemd-analyze for the unit
  # (tests/integration/test_deploy.py); Chromium for the dashboard test
  # (tests/browser, driven by playwright-core); clang, its libFuzzer runtime
  # and rapidcheck for the fuzz targets and property tests.
  # prometheus (Prometheus 2.42 and promtool) is the reference the
  # Prometheus API test compares against (tests/integration/
  # test_prometheus_api.py) and the remote_write test
  # (test_remote_write.py); victoria-metrics the query benchmark's
  # competitor (tests/soak/prom_query_bench.py).
  PACKAGES+=(curl golang-go python3-kubernetes systemd
             chromium clang libclang-rt-14-dev librapidcheck-dev
             prometheus victoria-metrics)
  # python3-websockets for the live-subscription tests and benchmark
  # (tests/integration/test_live*.py, tests/soak/live_bench.py).
  PACKAGES+=(python3-websockets)
  # python3-jwt (with python3-cryptography for RS256 / ES256) mints tokens
  # of another library for the JWT matrix (tests/integration/test_auth.py).
  PACKAGES+=(python3-jwt python3-cryptography)
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian ships npm separately; some Node.js builds bring their own.
if ! command -v npm >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get install -y -qq --no-install-recommends npm
fi
echo "install-deps: all ${#PACKAGES[@]} packages present"

# Project-local npm packages, pinned by the lock files next to them, never
# global (playwright-core drives Debian's chromium; it downloads no browser).
# web/ holds the dashboard's chart library (uPlot), served by the node from
# its web root (docs/operations.md, "Dashboard"): it is part of what is
# shipped, so the container's build stage installs it too (CAIRN_DEPS=build).
npm_dirs=(web)
# tests/auth: Node's jsonwebtoken mints tokens for the JWT matrix
# (tests/integration/test_auth.py).
if [ "${CAIRN_DEPS:-all}" != "build" ]; then npm_dirs+=(tools tests/browser tests/auth); fi
for dir in "${npm_dirs[@]}"; do
  # The container's build stage copies only web/'s manifest before this.
  [ -f "$here/$dir/package-lock.json" ] || continue
  stamp="$here/$dir/node_modules/.package-lock.json"
  if [ ! -f "$stamp" ] || [ "$here/$dir/package-lock.json" -nt "$stamp" ]; then
    (cd "$here/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
  echo "install-deps: $dir/node_modules present"
done
