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
echo "install-deps: all ${#PACKAGES[@]} packages present"
