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
# RSS, its CPU time, and whether the goals hold.
#
# The `load` scenario (SCENARIOS=load), after clusterloader2's load test, runs the pods the
# way a cluster does: LOAD_PODS pods in Deployments of 250, 30 and 5 replicas (a quarter, a
# quarter and half of the pods), a Service for every other Deployment of each size, on
# LOAD_NODES KWOK Nodes in three zones (each with a podCIDR KWOK takes the pods' IPs from).
# Beside the controllers measured run kube-scheduler, a kube-controller-manager with only the
# Deployment, ReplicaSet and garbage collector controllers, and KWOK (pods Running and Ready
# at once); both are built on first use (hack/kube-bins.sh with SVCPLANE_LOAD_TOOLS=1).
# Phases: create, rolling update (a pod template annotation), scale down by half, delete;
# each prints, per side, the time until the Deployments, pods, slices and Endpoints
# converged, the controller's CPU time and RSS, its write requests, its reaction times to
# KWOK's pod status writes and the pod deletes (audit log), split where a watcher of the pods
# in the bench received the change (the apiserver's delivery, then what the controller adds;
# Endpoints also from the answer to the Service's previous Endpoints write when that is later),
# its work queues' mean wait and sync per key (client-go's metrics), and its Endpoints and
# slice updates' mean time in the apiserver (audit log) and in its own client (client-go's
# rest_client_request_duration_seconds, svcplane's own write timing), and its syncs' time
# outside their writes, with the goals: CPU, reaction p50/p99 and that time at most 0.5x
# in-tree's, write requests at most in-tree's, peak RSS at most 0.33x. Release build;
# svcplane runs as the real `svcplane controllers --leader-elect=false` process. Figures
# depend on what else the machine runs: the load average is printed with each run.
#
# Environment:
#   SIDES              comma-separated: in-tree, in-tree-qps1000, svcplane, svcplane-qps20
#                      (svcplane at in-tree's default client rate, --kube-api-qps=20
#                      --kube-api-burst=30) (default in-tree,in-tree-qps1000,svcplane)
#   SCENARIOS          comma-separated: scale-up, churn, restart, load
#                      (default scale-up,churn)
#   PODS NODES BATCH   scale-up size (default 5000, 10, 100)
#   SERVICES PODS_PER_SERVICE FLIPS_PER_SECOND CHURN_SECONDS
#                      churn size (default 500, 10, 20, 60); SERVICES and
#                      PODS_PER_SERVICE are also the restart's
#   LOAD_PODS LOAD_NODES  load size (default 2000, 20)
#   BATCH_PERIOD       every side's --endpoint-updates-batch-period and
#                      --endpointslice-updates-batch-period (default 0s)
#   CONTROLLER_CPU     pins the controller process measured to this CPU and everything
#                      else to the others (taskset), as on a node of its own (default:
#                      nothing pinned)
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
BATCH_PERIOD=${BATCH_PERIOD:-0s}
LOAD_PODS=${LOAD_PODS:-2000}
LOAD_NODES=${LOAD_NODES:-20}

# The Kubernetes binaries first, so that their build is not part of a run; with
# kube-scheduler and KWOK for the load scenario.
if [[ ,$SCENARIOS, == *,load,* ]]; then export SVCPLANE_LOAD_TOOLS=1; fi
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
  --flips-per-second "$FLIPS_PER_SECOND" --churn-seconds "$CHURN_SECONDS" \
  --load-pods "$LOAD_PODS" --load-nodes "$LOAD_NODES" --batch-period "$BATCH_PERIOD" \
  ${CONTROLLER_CPU:+--controller-cpu "$CONTROLLER_CPU"}
