#!/usr/bin/env bash
# gen-certs.sh DIR N: a throwaway CA and certificates for nodes n1..nN, plus
# one client certificate. Writes DIR/ca.pem, DIR/ca.key, DIR/n<i>.pem +
# DIR/n<i>.key and DIR/client.pem + DIR/client.key. For tests and demos
# only: the keys are unencrypted and the CA key stays next to them.
#
# The node certificates serve both node-to-node mutual TLS (docs/cluster.md,
# "TLS") and the client ports (cairn.tcp.tls-*, cairn.http.tls-*,
# docs/operations.md "TLS"): they name localhost and 127.0.0.1 (plus
# CAIRN_CERT_SAN, e.g. "DNS:cairn.example,IP:10.0.0.5") so that clients
# checking the host name (curl, browsers, cairn-cli --tls-ca) accept them.
# client.pem is what cairn-cli / cairn-bench present with --tls-cert when a
# port requires client certificates (cairn.*.tls-client-ca = ca.pem).
#
#   scripts/gen-certs.sh /tmp/cairn-tls 3
#   CAIRN_TLS_DIR=/tmp/cairn-tls scripts/cluster.sh up 3
#
# gen-certs.sh DIR --add NAME signs one more node certificate (DIR/NAME.pem,
# DIR/NAME.key) with the CA already in DIR, for a node that joins later
# (scripts/cluster.sh add does it).
set -euo pipefail
dir="${1:?usage: gen-certs.sh DIR N | gen-certs.sh DIR --add NAME}"
n="${2:-3}"
san="DNS:localhost,IP:127.0.0.1,IP:::1${CAIRN_CERT_SAN:+,$CAIRN_CERT_SAN}"
# sign NAME EXTENSIONS: a key and a certificate signed by the CA.
sign() {
  openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
    -keyout "$dir/$1.key" -out "$dir/$1.csr" 2>/dev/null
  printf '%s\n' "$2" > "$dir/$1.ext"
  openssl x509 -req -in "$dir/$1.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 30 -extfile "$dir/$1.ext" -out "$dir/$1.pem" 2>/dev/null
  rm -f "$dir/$1.csr" "$dir/$1.ext"
}
if [[ "$n" == "--add" ]]; then
  name="${3:?usage: gen-certs.sh DIR --add NAME}"
  [[ "$name" =~ ^[A-Za-z0-9_.-]+$ ]] || { echo "gen-certs.sh: bad name '$name'" >&2; exit 2; }
  for f in ca.pem ca.key; do
    [[ -f "$dir/$f" ]] || { echo "gen-certs.sh: no $dir/$f to sign $name with" >&2; exit 1; }
  done
  [[ ! -e "$dir/$name.pem" ]] || { echo "gen-certs.sh: $dir/$name.pem exists" >&2; exit 1; }
  sign "$name" "subjectAltName=$san"
  chmod 600 "$dir/$name.key"
  echo "$name's certificate, signed by $dir/ca.pem, in $dir"
  exit 0
fi
mkdir -p "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=cairn-test-ca" \
  -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
for i in $(seq 1 "$n"); do
  sign "n$i" "subjectAltName=$san"
done
sign client "extendedKeyUsage=clientAuth"
chmod 600 "$dir"/*.key
echo "CA, $n node certificates and a client certificate in $dir"
