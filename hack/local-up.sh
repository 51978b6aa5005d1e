#!/usr/bin/env bash
# svcplane's main job, locally: builds what is missing, starts etcd + kube-apiserver on
# loopback with generated certificates, runs svcplane (controllers + webhook) against them,
# registers the webhook, plays the seed walkthrough step by step, then stays up and prints
# how to point kubectl at it. Ctrl-C stops everything and removes its files.
#
#   --in-tree          kube-controller-manager's endpoint controllers instead of svcplane's
#   --no-walkthrough   skip the demo
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" local-up

step "Kubernetes binaries (hack/kube-bins.sh)"
kube_bins

step "building svcplane and the local runner (cargo)"
cargo build --locked -p svcplane -p e2e --bin svcplane --bin local-up
export SVCPLANE_BIN="$CARGO_TARGET_DIR/debug/svcplane"
exec "$CARGO_TARGET_DIR/debug/local-up" "$@"
