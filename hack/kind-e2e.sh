#!/usr/bin/env bash
# svcplane in a real cluster: a kind cluster (one control plane, two workers in two zones,
# dual-stack) whose kube-controller-manager leaves Endpoints, EndpointSlices and their
# mirroring to svcplane, built entirely here by hack/kind-images.sh. Installs svcplane with
# `svcplane manifests` (2 replicas, serving certificate from a CA made here, webhook through
# its Service), then checks what real consumers see: kube-proxy routing ClusterIP, NodePort
# and selectorless Services to ready pods only, readiness taking a pod out and back, CoreDNS
# answering for a headless Service and <hostname>.<subdomain>. Removes the cluster at the end.
#
# Environment:
#   KIND_CLUSTER     cluster name (default: svcplane)
#   KIND_IP_FAMILY   dual (default) or ipv4
#   KIND_KEEP=1      keep the cluster after the checks (`kind delete cluster --name ...` later)
#   KIND_TAKEOVER=1  live takeover: the cluster starts with the in-tree endpoint controllers,
#                    the workload runs under them, svcplane is installed and
#                    kube-controller-manager restarted without them while a client keeps
#                    sending requests; then the same checks
#   KIND_SIDECAR=1   sidecar mode: svcplane in kube-controller-manager's static pod, the
#                    webhook at https://127.0.0.1:9443, as `svcplane manifests` describes
#   KIND_REUSE=1     run on the cluster KIND_KEEP left, if there is one (install and checks again)
#   KIND_SKIP_IMAGES=1  use the images hack/kind-images.sh built before, without checking them
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-svcplane}
ip_family=${KIND_IP_FAMILY:-dual}
namespace="svcplane-system"
ns="svcplane-e2e"
started=$SECONDS

say() { printf '[kind-e2e %4ss] %s\n' "$((SECONDS - started))" "$*" >&2; }
die() { printf '[kind-e2e] FAILED: %s\n' "$*" >&2; exit 1; }
for tool in openssl go cargo; do
  command -v "$tool" >/dev/null || die "$tool is required"
done

say "images (hack/kind-images.sh; returns at once when built)"
if [ -n "${KIND_SKIP_IMAGES:-}" ]; then
  eval "$(hack/kind-images.sh docker | grep -E '^[A-Z_]+=')"
else
  eval "$(hack/kind-images.sh | grep -E '^[A-Z_]+=')"
fi
KUBE_DIR=$(hack/kube-bins.sh kubelet kubeadm kube-proxy kube-scheduler | tail -n1)
kind() { "$KIND" "$@"; }
kubectl() { "$KUBE_DIR/kubectl" "$@"; }
svcplane=$SVCPLANE_BIN
[ -x "$svcplane" ] || die "$svcplane is missing: run hack/kind-images.sh svcplane (with the same CARGO_TARGET_DIR)"

work=$(mktemp -d)
export KUBECONFIG="$work/kubeconfig"
cleanup() {
  local rc=$?
  if [ -n "${KIND_KEEP:-}" ]; then
    say "keeping cluster $cluster (KUBECONFIG=$work/kubeconfig)"
    exit "$rc"
  fi
  if [ "$rc" != 0 ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    kubectl get nodes,pods -A -o wide >&2 || true
  fi
  kind delete cluster --name "$cluster" >&2 || true
  rm -rf "$work"
  left=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$cluster")
  [ -z "$left" ] || { echo "[kind-e2e] containers left behind: $left" >&2; rc=1; }
  ! kind get clusters 2>/dev/null | grep -qx "$cluster" || { echo "[kind-e2e] cluster $cluster left behind" >&2; rc=1; }
  exit "$rc"
}
trap cleanup EXIT

# --- cluster --------------------------------------------------------------------------------
sed "s/ETCD_TAG/$ETCD_TAG/" hack/kind/cluster.yaml >"$work/cluster.yaml"
case "$ip_family" in
  dual) ;;
  ipv4)
    sed -i -e 's/ipFamily: dual/ipFamily: ipv4/' -e 's|"10.96.0.0/12,fd00:10:96::/112"|"10.96.0.0/12"|' \
      -e 's|"10.244.0.0/16,fd00:10:244::/56"|"10.244.0.0/16"|' "$work/cluster.yaml" ;;
  *) die "KIND_IP_FAMILY must be dual or ipv4" ;;
esac
if [ -n "${KIND_TAKEOVER:-}" ]; then
  # kube-controller-manager as kubeadm configures it: the in-tree endpoint controllers on.
  awk '/^# kubeadm.s own --controllers/ { skip = 1 } /^nodes:/ { skip = 0 } !skip' "$work/cluster.yaml" >"$work/cluster.in-tree.yaml"
  mv "$work/cluster.in-tree.yaml" "$work/cluster.yaml"
fi
ranges=$(awk -F'"' '/serviceSubnet/ { print $2 }' "$work/cluster.yaml")

create_cluster() {
  kind get clusters 2>/dev/null | grep -qx "$cluster" && kind delete cluster --name "$cluster" >&2
  say "kind create cluster $cluster ($ip_family, image $NODE_IMAGE)"
  t=$SECONDS
  kind create cluster --name "$cluster" --image "$NODE_IMAGE" --config "$work/cluster.yaml" \
    --kubeconfig "$KUBECONFIG" --wait 0s >&2
  say "cluster created in $((SECONDS - t))s"

  # Pod network: the CNI bridge plugin with host-local addresses from each node's podCIDRs,
  # and a route on every node to every other node's podCIDRs through that node's address.
  say "pod network (bridge + routes)"
  nodes=$(kind get nodes --name "$cluster" | sort)
  for _ in $(seq 60); do
    missing=0
    for n in $nodes; do [ -n "$(kubectl get node "$n" -o jsonpath='{.spec.podCIDRs}')" ] || missing=1; done
    [ $missing = 0 ] && break
    sleep 2
  done
  declare -A addr4 addr6 cidrs
  for n in $nodes; do
    addr4[$n]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$n")
    addr6[$n]=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' "$n")
    cidrs[$n]=$(kubectl get node "$n" -o jsonpath='{.spec.podCIDRs[*]}')
    [ -n "${cidrs[$n]}" ] || die "node $n has no podCIDRs"
  done
  for n in $nodes; do
    ranges_json=$(for c in ${cidrs[$n]}; do printf '[{"subnet":"%s"}],' "$c"; done)
    docker exec -i "$n" sh -c 'mkdir -p /etc/cni/net.d && cat >/etc/cni/net.d/10-svcplane-bridge.conflist' <<JSON
{"cniVersion": "1.0.0", "name": "svcplane-bridge", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [${ranges_json%,}],
            "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
    docker exec "$n" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
    for other in $nodes; do
      [ "$other" != "$n" ] || continue
      for c in ${cidrs[$other]}; do
        if [[ $c == *:* ]]; then
          docker exec "$n" ip -6 route replace "$c" via "${addr6[$other]}"
        else
          docker exec "$n" ip route replace "$c" via "${addr4[$other]}"
        fi
      done
    done
  done
  kubectl wait --for=condition=Ready nodes --all --timeout=240s >&2
  say "nodes ready: $(kubectl get nodes -o jsonpath='{range .items[*]}{.metadata.name}({.metadata.labels.topology\.kubernetes\.io/zone}) {end}')"
}

if [ -n "${KIND_REUSE:-}" ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing cluster $cluster"
  kind export kubeconfig --name "$cluster" --kubeconfig "$KUBECONFIG" >&2
  kubectl delete namespace "$ns" --ignore-not-found --wait >&2
else
  create_cluster
fi

# --- svcplane ---------------------------------------------------------------------------------
say "loading images svcplane:e2e, svcplane-test-server:e2e"
kind load docker-image --name "$cluster" svcplane:e2e svcplane-test-server:e2e >&2

source hack/kind/checks.sh
if [ -n "${KIND_TAKEOVER:-}" ]; then
  say "workload under the in-tree endpoint controllers"
  workload
  poll_log="$work/poll.log"
  start_poller "http://web.$ns/" "$poll_log"
fi

say "serving certificate for svcplane.$namespace.svc"
openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=svcplane-ca" \
  -keyout "$work/ca.key" -out "$work/ca.crt" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=svcplane.$namespace.svc" \
  -keyout "$work/tls.key" -out "$work/tls.csr" 2>/dev/null
printf 'subjectAltName=DNS:svcplane.%s.svc,DNS:svcplane.%s.svc.cluster.local,IP:127.0.0.1\n' "$namespace" "$namespace" >"$work/san.ext"
openssl x509 -req -in "$work/tls.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" -CAcreateserial \
  -days 30 -extfile "$work/san.ext" -out "$work/tls.crt" 2>/dev/null

[ -z "${poll_log:-}" ] || echo "# install $(date +%T)" >>"$poll_log"
if [ -z "${KIND_SIDECAR:-}" ]; then
  say "install: svcplane manifests --service-cluster-ip-range=$ranges --replicas=2"
  "$svcplane" manifests --service-cluster-ip-range="$ranges" --image=svcplane:e2e --replicas=2 \
    --ca-bundle-file="$work/ca.crt" >"$work/svcplane.yaml"
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >&2
  kubectl -n "$namespace" create secret tls svcplane-webhook-tls --cert="$work/tls.crt" --key="$work/tls.key" \
    --dry-run=client -o yaml | kubectl apply -f - >&2
  kubectl apply --server-side -f "$work/svcplane.yaml" >&2
  # A reused cluster has just been given a new CA: start the replicas on the new certificate
  # rather than wait for the Secret's volume to catch up.
  [ -z "${KIND_REUSE:-}" ] || kubectl -n "$namespace" rollout restart deployment/svcplane >&2
  kubectl -n "$namespace" rollout status deployment/svcplane --timeout=180s >&2
else
  install_sidecar
fi
kubectl -n kube-system rollout status deployment/coredns --timeout=120s >&2

if [ -n "${KIND_TAKEOVER:-}" ]; then
  echo "# takeover $(date +%T)" >>"$poll_log"
  takeover
  sleep 15
  stop_poller "$poll_log"
fi

# --- checks -----------------------------------------------------------------------------------
run_checks
say "all checks passed"
