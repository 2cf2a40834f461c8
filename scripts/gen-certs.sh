#!/usr/bin/env bash
# gen-certs.sh DIR N: a throwaway CA and certificates for nodes n1..nN, for
# node-to-node mutual TLS (docs/cluster.md, "TLS"). Writes DIR/ca.pem,
# DIR/ca.key and DIR/n<i>.pem + DIR/n<i>.key. For tests and demos only: the
# keys are unencrypted and the CA key stays next to them.
#
#   scripts/gen-certs.sh /tmp/cairn-tls 3
#   CAIRN_TLS_DIR=/tmp/cairn-tls scripts/cluster.sh up 3
set -euo pipefail
dir="${1:?usage: gen-certs.sh DIR N}"
n="${2:-3}"
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cairn-test-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
for i in $(seq 1 "$n"); do
  openssl req -newkey rsa:2048 -nodes -subj "/CN=n$i" \
    -keyout "$dir/n$i.key" -out "$dir/n$i.csr" 2>/dev/null
  openssl x509 -req -in "$dir/n$i.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -out "$dir/n$i.pem" 2>/dev/null
  rm -f "$dir/n$i.csr"
done
chmod 600 "$dir"/*.key
echo "CA and $n node certificates in $dir"
