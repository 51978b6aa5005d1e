#!/usr/bin/env bash
# What svcplane's admission webhook costs a Service create: creates SERVICES Services from
# CLIENTS concurrent clients against a fresh local control plane without the webhook, then
# against another with it (ROUNDS times, alternating; the webhook is svcplane's own binary,
# `svcplane webhook`, in a process of its own), and prints p50/p99 create latency,
# total time, the webhook's own handling time (its histogram) and whether the goals hold.
# Release build. Figures depend on what else the machine runs: the load average is
# printed with each run.
#
# Environment:
#   SERVICES   creates per run (default 5000)
#   CLIENTS    concurrent clients (default 50)
#   WARMUP     unmeasured creates before each run (default 200)
#   ROUNDS     rounds of a run without then a run with the webhook (default 3)
#   NODE_PORT_EVERY  one Service in this many is a NodePort (default 5; 0: none)
#   RATE       creates per second, the same for both runs (default 0: closed loop, each
#              client sending its next create when its last one is answered)
#   WEBHOOK_CPU  gives svcplane this CPU to itself (pinned with taskset; etcd,
#              kube-apiserver and the driver on the others, in both runs), as a replica on a
#              node of its own would have it; unset: nothing pinned
#   CARGO_TARGET_DIR   where cargo builds (default: $SVCPLANE_CACHE/target, see hack/lib.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" bench-webhook

SERVICES=${SERVICES:-5000}
CLIENTS=${CLIENTS:-50}
WARMUP=${WARMUP:-200}
ROUNDS=${ROUNDS:-3}
NODE_PORT_EVERY=${NODE_PORT_EVERY:-5}
RATE=${RATE:-0}

# The Kubernetes binaries first, so that their build is not part of a run.
kube_bins
cargo build --release -p svcplane --bin svcplane
cargo build --release -p e2e --bin bench-webhook

# Copies, so that a build in the shared target directory during the run changes nothing.
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
cp "$CARGO_TARGET_DIR/release/svcplane" "$CARGO_TARGET_DIR/release/bench-webhook" "$BIN/"

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# What the binaries are built from: svcplane, the webhook, the allocator, the e2e crate.
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- svcplane webhook allocator controllers tests/src tests/Cargo.toml Cargo.lock || echo ' (with local changes)')"
"$BIN/bench-webhook" --svcplane "$BIN/svcplane" --services "$SERVICES" --clients "$CLIENTS" --warmup "$WARMUP" --rounds "$ROUNDS" --node-port-every "$NODE_PORT_EVERY" --rate "$RATE" ${WEBHOOK_CPU:+--webhook-cpu "$WEBHOOK_CPU"}
