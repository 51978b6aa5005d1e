#!/usr/bin/env bash
# svcplane's main job, locally: builds what is missing, starts etcd + kube-apiserver on
# loopback with generated certificates, runs svcplane (controllers + webhook) against them,
# registers the webhook, plays the seed walkthrough step by step, then stays up and prints
# how to point kubectl at it. Ctrl-C stops everything and removes its files.
#
#   --in-tree          kube-controller-manager's endpoint controllers instead of svcplane's
#   --no-walkthrough   skip the demo
set -euo pipefail
cd "$(dirname "$0")/.."

export SVCPLANE_CACHE=${SVCPLANE_CACHE:-$HOME/.cache/svcplane}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SVCPLANE_CACHE/target}

echo "==> Kubernetes binaries (hack/kube-bins.sh)" >&2
SVCPLANE_KUBE_BIN_DIR=$(bash hack/kube-bins.sh | tail -n 1)
export SVCPLANE_KUBE_BIN_DIR

echo "==> building svcplane and the local runner (cargo)" >&2
cargo build --locked -p svcplane -p e2e --bin svcplane --bin local-up
export SVCPLANE_BIN="$CARGO_TARGET_DIR/debug/svcplane"
exec "$CARGO_TARGET_DIR/debug/local-up" "$@"
