#!/usr/bin/env bash
# tls_compare.sh [BUILD_APPS_DIR] [ROUNDS]: NDJSON ingest over plain TCP vs
# TLS (docs/benchmarks.md, "TLS ingest"). Two in-memory nodes on free
# loopback ports, one plain, one with cairn.tcp.tls-* (certificates from
# scripts/gen-certs.sh); cairn-bench ff, 2 connections, 2,000,000 events,
# rounds interleaved. Prints events/s (until the final flush is answered),
# the node's CPU seconds for the run and cairn-bench's user/system seconds.
set -u
S=$(cd "$(dirname "$0")/../.." && pwd)
B=${1:-$S/build/apps}
ROUNDS=${2:-3}
C=$(mktemp -d); $S/scripts/gen-certs.sh $C 1 >/dev/null
read P1 H1 K1 P2 H2 K2 < <(python3 -c "
import socket
ss=[socket.socket() for _ in range(6)]
[s.bind(('127.0.0.1',0)) for s in ss]
print(*[s.getsockname()[1] for s in ss])")
common="--config-file=$S/configs/single.ini --cairn.storage.enabled=false --cairn.log.level=warn"
$B/cairn-node $common --cairn.node-name=plain --cairn.tcp.port=$P1 --cairn.http.port=$H1 --cairn.cluster.port=$K1 >/dev/null 2>&1 & N1=$!
$B/cairn-node $common --cairn.node-name=tls --cairn.tcp.port=$P2 --cairn.http.port=$H2 --cairn.cluster.port=$K2 \
  --cairn.tcp.tls-certificate=$C/n1.pem --cairn.tcp.tls-key=$C/n1.key >/dev/null 2>&1 & N2=$!
sleep 2
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # label pid args...
  local label=$1 pid=$2; shift 2
  local c0=$(cpu $pid)
  local out=$(/usr/bin/time -f "%U %S" $B/cairn-bench "$@" --connections 2 --events 2000000 --json 2>"$C/time")
  local c1=$(cpu $pid)
  local bt=$(tail -1 "$C/time")
  echo "$label $(echo "$out" | python3 -c 'import json,sys;d=json.load(sys.stdin);print(round(d["accepted_per_second"]), d["accepted"])') node_cpu_s $(awk "BEGIN{print ($c1-$c0)/100}") bench_cpu_s $bt"
}
for r in $(seq 1 "$ROUNDS"); do
  run "round $r plain:" $N1 --port $P1
  run "round $r tls:  " $N2 --port $P2 --tls --tls-ca $C/ca.pem
done
kill $N1 $N2; wait $N1 $N2 2>/dev/null; rm -rf $C
uptime
