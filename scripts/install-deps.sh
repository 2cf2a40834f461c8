#!/usr/bin/env bash
# Installs every Debian package Cairn needs to build, test and run.
# Idempotent and non-interactive; safe to run repeatedly.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git
  libcaf-dev libboost-dev libboost-system-dev
  nlohmann-json3-dev libsimdjson-dev doctest-dev
  libssl-dev libleveldb-dev libsnappy-dev libspdlog-dev libfmt-dev libjwt-dev libxxhash-dev
  libreadline-dev libbenchmark-dev
  netcat-openbsd python3 tmux expect procps openssl
  chromium
  clang libclang-rt-14-dev librapidcheck-dev
)

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
# Node.js and npm for the browser tests: Debian's packages where the machine
# has none (a machine may bring its own Node.js that already includes npm).
node_missing=()
command -v node >/dev/null 2>&1 || node_missing+=(nodejs)
command -v npm >/dev/null 2>&1 || node_missing+=(npm)
if [ "${#node_missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${node_missing[@]}"
fi

# npm packages, pinned by the lock files next to them (playwright-core drives
# Debian's chromium; it downloads no browser of its own).
here="$(cd "$(dirname "$0")/.." && pwd)"
for dir in tests/browser; do
  if [ ! -d "$here/$dir/node_modules" ] \
     || ! (cd "$here/$dir" && npm ls --omit=dev >/dev/null 2>&1); then
    (cd "$here/$dir" && npm ci --no-audit --no-fund --loglevel=error)
  fi
done
echo "install-deps: all ${#PACKAGES[@]} packages present"
