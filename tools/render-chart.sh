#!/usr/bin/env bash
# render-chart.sh [--static]: renders deploy/helm/cairn with its values.yaml
# (release "cairn") the way `helm template` does, with tools/helm-render, to
# stdout. --static adds the header of deploy/kubernetes/cairn.yaml:
#   tools/render-chart.sh --static > deploy/kubernetes/cairn.yaml
# Needs go and node (scripts/install-deps.sh); offline.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
GO111MODULE=off GOFLAGS="" GOCACHE="$tmp/gocache" \
  go build -o "$tmp/helm-render" "$here/tools/helm-render/main.go"
chart="$(node "$here/tools/k8s-check.mjs" json "$here/deploy/helm/cairn/Chart.yaml")"
values="$(node "$here/tools/k8s-check.mjs" json "$here/deploy/helm/cairn/values.yaml")"
printf '{"chart":%s,"values":%s,"release":{"name":"cairn","namespace":"default"}}' \
  "${chart:1:${#chart}-2}" "${values:1:${#values}-2}" > "$tmp/input.json"
if [[ "${1:-}" == "--static" ]]; then
  cat <<'HEADER'
# Cairn on Kubernetes: a 3-member StatefulSet with mutual TLS between members
# (docs/operations.md, "Kubernetes"). This file is the Helm chart
# deploy/helm/cairn rendered with its default values (release "cairn") by
# tools/render-chart.sh --static; tests/integration/test_deploy.py checks
# that the two agree. Before applying:
#   kubectl create secret generic cairn-tls --from-file=tls.crt=node.pem \
#     --from-file=tls.key=node.key --from-file=ca.crt=ca.pem
#   head -c 48 /dev/urandom | base64 > jwt-secret
#   kubectl create secret generic cairn-jwt --from-file=secret=jwt-secret
#   kubectl apply -f deploy/kubernetes/cairn.yaml
HEADER
fi
"$tmp/helm-render" "$here/deploy/helm/cairn" "$tmp/input.json"
