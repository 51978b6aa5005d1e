#!/usr/bin/env bash
# For users with Docker: creates a kind cluster with the in-tree endpoint controllers off,
# builds and loads svcplane's image, installs it with `svcplane manifests` (serving
# certificate from a self-signed CA made here), and runs the e2e suite against the cluster
# through KUBECONFIG.
#
# Needs: docker, kind, kubectl, openssl, cargo. Environment: KIND_CLUSTER (default svcplane).
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-svcplane}
image=svcplane:e2e
namespace=svcplane-system
ranges="10.96.0.0/12,fd00:10:96::/112"
for tool in docker kind kubectl openssl cargo; do
  command -v "$tool" >/dev/null || { echo "kind-e2e: $tool is required" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export KUBECONFIG="$work/kubeconfig"

echo "==> kind cluster $cluster (in-tree endpoint controllers off)" >&2
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --config hack/kind/cluster.yaml
kind export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG"

echo "==> image $image" >&2
docker build -t "$image" .
kind load docker-image "$image" --name "$cluster"

echo "==> serving certificate for svcplane.$namespace.svc" >&2
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=svcplane-ca" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=svcplane.$namespace.svc" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:svcplane.%s.svc,DNS:svcplane.%s.svc.cluster.local\n' "$namespace" "$namespace" >"$work/san.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 30 -extfile "$work/san.ext" -out "$work/tls.crt" 2>/dev/null

echo "==> install" >&2
cargo build --locked -p svcplane --bin svcplane
svcplane=${CARGO_TARGET_DIR:-target}/debug/svcplane
"$svcplane" manifests --service-cluster-ip-range="$ranges" --image="$image" --ca-bundle-file="$work/ca.crt" >"$work/svcplane.yaml"
kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create secret tls svcplane-webhook-tls --cert="$work/tls.crt" --key="$work/tls.key" \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply --server-side -f "$work/svcplane.yaml"
kubectl -n "$namespace" rollout status deployment/svcplane --timeout=180s

echo "==> e2e suite against kind" >&2
cargo test --locked -p e2e --test e2e
