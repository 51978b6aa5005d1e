#!/usr/bin/env bash
# Starts a local control plane: etcd + kube-apiserver on loopback with generated
# certificates, and kube-controller-manager running the in-tree endpoint controllers
# (pass --without-in-tree-endpoint-controllers to leave them off). Builds what is missing
# first. Prints how to point kubectl at it; Ctrl-C stops everything cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."

export SVCPLANE_CACHE=${SVCPLANE_CACHE:-$HOME/.cache/svcplane}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SVCPLANE_CACHE/target}

echo "==> Kubernetes binaries (hack/kube-bins.sh)" >&2
SVCPLANE_KUBE_BIN_DIR=$(bash hack/kube-bins.sh | tail -n 1)
export SVCPLANE_KUBE_BIN_DIR

echo "==> building the local control plane runner" >&2
cargo build --locked -p e2e --bin local-control-plane
exec "$CARGO_TARGET_DIR/debug/local-control-plane" "$@"
