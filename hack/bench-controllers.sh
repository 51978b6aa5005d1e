#!/usr/bin/env bash
# svcplane's Endpoints and EndpointSlice controllers against kube-controller-manager's, side
# by side on fresh local control planes, in one run: a scale-up (one Service, 0 -> PODS ready
# pods over NODES Nodes in batches of BATCH) and a churn (SERVICES Services x PODS_PER_SERVICE
# pods, then FLIPS_PER_SECOND readiness flips for CHURN_SECONDS), and, when SCENARIOS names
# it, a restart (the churn's Services and pods published, then the controller process
# stopped with SIGTERM and started again with the same flags: the time until it has verified
# every Service, its writes, CPU time and peak RSS until then). Prints, per side: times,
# flip delays, reaction times read from kube-apiserver's audit log (pod write answered to the
# controller's write received), Endpoints/EndpointSlice writes, the controller's RSS and peak
# RSS, its CPU time, and whether the goals hold. Release build; svcplane runs as the real
# `svcplane controllers --leader-elect=false` process. Figures depend on what else the
# machine runs: the load average is printed with each run.
#
# Environment:
#   SIDES              comma-separated: in-tree, in-tree-qps1000, svcplane
#                      (default in-tree,in-tree-qps1000,svcplane)
#   SCENARIOS          comma-separated: scale-up, churn, restart (default scale-up,churn)
#   PODS NODES BATCH   scale-up size (default 5000, 10, 100)
#   SERVICES PODS_PER_SERVICE FLIPS_PER_SECOND CHURN_SECONDS
#                      churn size (default 500, 10, 20, 60); SERVICES and
#                      PODS_PER_SERVICE are also the restart's
#   CARGO_TARGET_DIR   where cargo builds (default: $SVCPLANE_CACHE/target, see hack/lib.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" bench-controllers

SIDES=${SIDES:-in-tree,in-tree-qps1000,svcplane}
SCENARIOS=${SCENARIOS:-scale-up,churn}
PODS=${PODS:-5000}
NODES=${NODES:-10}
BATCH=${BATCH:-100}
SERVICES=${SERVICES:-500}
PODS_PER_SERVICE=${PODS_PER_SERVICE:-10}
FLIPS_PER_SECOND=${FLIPS_PER_SECOND:-20}
CHURN_SECONDS=${CHURN_SECONDS:-60}

# The Kubernetes binaries first, so that their build is not part of a run.
kube_bins
cargo build --release -p svcplane --bin svcplane
cargo build --release -p e2e --bin bench-controllers

# Copies, so that a build in the shared target directory during the run changes nothing.
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
cp "$CARGO_TARGET_DIR/release/svcplane" "$CARGO_TARGET_DIR/release/bench-controllers" "$BIN/"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- controllers svcplane tests || echo ' (with local changes)')"
echo "kube-controller-manager: $("$SVCPLANE_KUBE_BIN_DIR/kube-controller-manager" --version)"
"$BIN/bench-controllers" --svcplane "$BIN/svcplane" \
  --sides "$SIDES" --scenarios "$SCENARIOS" \
  --pods "$PODS" --nodes "$NODES" --batch "$BATCH" \
  --services "$SERVICES" --pods-per-service "$PODS_PER_SERVICE" \
  --flips-per-second "$FLIPS_PER_SECOND" --churn-seconds "$CHURN_SECONDS"
