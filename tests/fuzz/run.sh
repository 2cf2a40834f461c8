#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (tests/fuzz/CMakeLists.txt) and runs
# one of them for a bounded time over its corpus in the repository.
#   run.sh build BUILD_DIR              configure + build every target
#   run.sh run BUILD_DIR TARGET [SECS]  fuzz TARGET for SECS (default 60) s
# New inputs go to BUILD_DIR/corpus/TARGET (the repository's corpus is only
# read); a crash leaves its input in BUILD_DIR/artifacts and fails the run.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cmd=$1 build=$2
case "$cmd" in
  build)
    CXX=clang++ cmake -S "$here" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
    cmake --build "$build"
    ;;
  run)
    target=$3 secs=${4:-60}
    mkdir -p "$build/corpus/$target" "$build/artifacts"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
    export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
    "$build/fuzz_$target" -max_total_time="$secs" -max_len=4096 -timeout=10 \
      -rss_limit_mb=2048 -print_final_stats=1 \
      -artifact_prefix="$build/artifacts/$target-" \
      "$build/corpus/$target" "$here/corpus/$target"
    ;;
  *)
    echo "usage: run.sh build DIR | run DIR TARGET [SECS]" >&2
    exit 2
    ;;
esac
