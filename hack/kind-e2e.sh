#!/usr/bin/env bash
# svcplane in a real cluster: a kind cluster (one control plane, two workers in two zones,
# dual-stack) built entirely here by hack/kind-images.sh, kube-apiserver presenting a client
# certificate to the webhook (`svcplane manifests --admission-config`). Installs svcplane
# with `svcplane manifests` (2 replicas, serving certificate from a CA made here, webhook
# through its Service), checks what real consumers see: kube-proxy routing ClusterIP,
# NodePort and selectorless Services to ready pods only, readiness taking a pod out and back,
# CoreDNS answering for a headless Service and <hostname>.<subdomain>, kubeadm's bootstrap
# token controllers still running; then runs the e2e suite (tests/tests/e2e) against the
# cluster through KUBECONFIG. Removes the cluster at the end.
#
# Environment:
#   KIND_CLUSTER     cluster name (default: svcplane)
#   KIND_IP_FAMILY   dual (default) or ipv4
#   KIND_KEEP=1      keep the cluster after the checks (`kind delete cluster --name ...` later)
#   KIND_TAKEOVER=1  live takeover: the cluster starts with kube-controller-manager as kubeadm
#                    configures it (the in-tree endpoint controllers on), the workload runs
#                    under them, svcplane is installed and kube-controller-manager restarted
#                    without them while a client keeps sending requests; then the same checks
#   KIND_SIDECAR=1   sidecar mode: the cluster starts as with KIND_TAKEOVER, then svcplane
#                    goes into kube-controller-manager's static pod exactly as the sidecar
#                    section of `svcplane manifests --webhook-url=https://127.0.0.1:9443`
#                    says, webhook at https://127.0.0.1:9443 (with KIND_TAKEOVER=1: under the
#                    client's requests)
#   KIND_REUSE=1     run on the cluster KIND_KEEP left, if there is one (install and checks again)
#   SVCPLANE_CACHE   cache root (default: $HOME/.cache/svcplane); the cluster's certificates
#                    and kubeconfig are kept in $SVCPLANE_CACHE/kind/clusters/<name> while it lives
#   CARGO_TARGET_DIR cargo's build directory (default: $SVCPLANE_CACHE/target, as hack/test.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" kind-e2e

cluster=${KIND_CLUSTER:-svcplane}
ip_family=${KIND_IP_FAMILY:-dual}
namespace="svcplane-system"
ns="svcplane-e2e"
for tool in openssl go cargo jq; do
  command -v "$tool" >/dev/null || die "$tool is required"
done
case "$ip_family" in dual | ipv4) ;; *) die "KIND_IP_FAMILY must be dual or ipv4" ;; esac

say "images (hack/kind-images.sh; returns at once when built)"
images=$(hack/kind-images.sh) || die "hack/kind-images.sh failed (see above)"
eval "$(grep -E '^[A-Z_]+=' <<<"$images")"
kind() { "$KIND" "$@"; }
kubectl() { "$KUBE_DIR/kubectl" "$@"; }
svcplane=$SVCPLANE_BIN

state="$SVCPLANE_CACHE/kind/clusters/$cluster"
# The control-plane node's /etc/kubernetes/svcplane: kube-apiserver's side of the webhook's
# client authentication, and in the sidecar mode the sidecar's certificates.
node_dir="$state/node"
export KUBECONFIG="$state/kubeconfig"
cleanup() {
  local rc=$?
  [ -z "${poller:-}" ] || kill "$poller" 2>/dev/null || true
  if [ -n "${KIND_KEEP:-}" ]; then
    say "keeping cluster $cluster (KUBECONFIG=$KUBECONFIG)"
    exit "$rc"
  fi
  if [ "$rc" != 0 ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
    kubectl get nodes,pods -A -o wide >&2 || true
    # What svcplane and kube-apiserver said about the webhook: a call that failed open
    # (failurePolicy Ignore) shows here and nowhere else.
    echo "[kind-e2e] svcplane's logs (last 150 lines of each container):" >&2
    kubectl -n "$namespace" logs -l app.kubernetes.io/name=svcplane --all-containers --prefix --tail=150 >&2 || true
    echo "[kind-e2e] kube-apiserver's lines about webhooks:" >&2
    kubectl -n kube-system logs "kube-apiserver-$cluster-control-plane" 2>/dev/null | grep -i 'webhook' | tail -n 60 >&2 || true
  fi
  kind delete cluster --name "$cluster" >&2 || true
  rm -rf "$state"
  left=$(docker ps -aq --filter "label=io.x-k8s.kind.cluster=$cluster")
  [ -z "$left" ] || { echo "[kind-e2e] containers left behind: $left" >&2; rc=1; }
  ! kind get clusters 2>/dev/null | grep -qx "$cluster" || { echo "[kind-e2e] cluster $cluster left behind" >&2; rc=1; }
  exit "$rc"
}
trap cleanup EXIT
# Stopped from outside (hack/test.sh bounds each run): the cleanup still says what it saw.
trap 'exit 143' TERM INT

ranges="10.96.0.0/12,fd00:10:96::/112"
pods="10.244.0.0/16,fd00:10:244::/56"
[ "$ip_family" = dual ] || { ranges=${ranges%%,*}; pods=${pods%%,*}; }
manifests_args=(--service-cluster-ip-range="$ranges" --image="$SVCPLANE_IMAGE" --ca-bundle-file="$state/ca.crt")
if [ -n "${KIND_SIDECAR:-}" ]; then
  manifests_args+=(--webhook-url=https://127.0.0.1:9443)
else
  manifests_args+=(--replicas=2)
fi

# certificates: the webhook's serving certificate (for its Service and for 127.0.0.1), and
# kube-apiserver's client certificate from a CA of its own, with the files
# `svcplane manifests --admission-config` asks for on the control-plane node.
certificates() {
  say "certificates: svcplane's serving certificate, kube-apiserver's client certificate"
  rm -rf "$state"
  mkdir -p "$node_dir/tls" "$node_dir/callers"
  local s=$state
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=svcplane-ca" \
    -keyout "$s/ca.key" -out "$s/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=svcplane.$namespace.svc" \
    -keyout "$s/tls.key" -out "$s/tls.csr" 2>/dev/null
  printf 'subjectAltName=DNS:svcplane.%s.svc,DNS:svcplane.%s.svc.cluster.local,IP:127.0.0.1\n' "$namespace" "$namespace" >"$s/san.ext"
  openssl x509 -req -in "$s/tls.csr" -CA "$s/ca.crt" -CAkey "$s/ca.key" -CAcreateserial \
    -days 30 -extfile "$s/san.ext" -out "$s/tls.crt" 2>/dev/null
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=svcplane-webhook-callers" \
    -keyout "$s/callers-ca.key" -out "$s/callers-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
    -keyout "$node_dir/webhook-client.key" -out "$s/webhook-client.csr" 2>/dev/null
  # A version 3 certificate (webpki refuses version 1), for client authentication.
  echo 'extendedKeyUsage=clientAuth' >"$s/client.ext"
  openssl x509 -req -in "$s/webhook-client.csr" -CA "$s/callers-ca.crt" -CAkey "$s/callers-ca.key" \
    -CAcreateserial -days 30 -extfile "$s/client.ext" -out "$node_dir/webhook-client.crt" 2>/dev/null
  # The documents the output names by their path on the node, each written there.
  "$svcplane" manifests "${manifests_args[@]}" --admission-config |
    awk -v dir="$node_dir" '/^# (--- )?\/[^ ]+$/ { n = split($NF, p, "/"); file = dir "/" p[n]; next }
      /^---$/ { file = ""; next } file != "" { print > file }'
  for f in admission-config.yaml webhook-client.kubeconfig; do
    [ -f "$node_dir/$f" ] || die "svcplane manifests --admission-config did not write $f"
  done
  # The sidecar's files, where its section of the manifests says.
  cp "$s/tls.crt" "$s/tls.key" "$node_dir/tls/"
  cp "$s/callers-ca.crt" "$node_dir/callers/ca.crt"
}

# --- cluster --------------------------------------------------------------------------------
create_cluster() {
  kind get clusters 2>/dev/null | grep -qx "$cluster" && kind delete cluster --name "$cluster" >&2
  certificates
  local controllers
  controllers=$("$svcplane" manifests "${manifests_args[@]}" | grep -o -m1 -- '--controllers=[^ ]*')
  sed -e "s|NODE_DIR|$node_dir|" -e "s|CONTROLLERS|${controllers#--controllers=}|" \
    -e "s|SERVICE_SUBNET|$ranges|" -e "s|POD_SUBNET|$pods|" -e "s|IP_FAMILY|$ip_family|" \
    hack/kind/cluster.yaml >"$state/cluster.yaml"
  if [ -n "${KIND_TAKEOVER:-}${KIND_SIDECAR:-}" ]; then
    # kube-controller-manager as kubeadm configures it: the in-tree endpoint controllers on.
    awk '/^  # The in-tree endpoint controllers off/ { skip = 1 } /^nodes:/ { skip = 0 } !skip' \
      "$state/cluster.yaml" >"$state/cluster.in-tree.yaml"
    mv "$state/cluster.in-tree.yaml" "$state/cluster.yaml"
  fi
  say "kind create cluster $cluster ($ip_family, image $NODE_IMAGE)"
  local t=$SECONDS
  kind create cluster --name "$cluster" --image "$NODE_IMAGE" --config "$state/cluster.yaml" \
    --kubeconfig "$KUBECONFIG" --wait 0s >&2
  say "cluster created in $((SECONDS - t))s"

  # Pod network: the CNI bridge plugin with host-local addresses from each node's podCIDRs,
  # and a route on every node to every other node's podCIDRs through that node's address.
  say "pod network (bridge + routes)"
  local nodes n other c missing ranges_json
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

if [ -n "${KIND_REUSE:-}" ] && [ -f "$KUBECONFIG" ] && kind get clusters 2>/dev/null | grep -qx "$cluster"; then
  say "reusing cluster $cluster"
  kubectl delete namespace "$ns" --ignore-not-found --wait >&2
else
  create_cluster
fi

# --- svcplane ---------------------------------------------------------------------------------
say "loading images $SVCPLANE_IMAGE, $TEST_SERVER_IMAGE"
kind load docker-image --name "$cluster" "$SVCPLANE_IMAGE" "$TEST_SERVER_IMAGE" >&2

source hack/kind/checks.sh
if [ -n "${KIND_TAKEOVER:-}" ]; then
  say "workload under the in-tree endpoint controllers"
  workload
  poll_log="$state/poll.log"
  start_poller "http://web.$ns/" "$poll_log"
fi

"$svcplane" manifests "${manifests_args[@]}" >"$state/svcplane.yaml"
[ -z "${poll_log:-}" ] || echo "# install $(date +%T)" >>"$poll_log"
if [ -z "${KIND_SIDECAR:-}" ]; then
  install_deployment
  if [ -n "${KIND_TAKEOVER:-}" ]; then
    echo "# takeover $(date +%T)" >>"$poll_log"
    takeover
  fi
else
  install_sidecar
fi
kubectl -n kube-system rollout status deployment/coredns --timeout=120s >&2
if [ -n "${KIND_TAKEOVER:-}" ]; then
  sleep 15
  stop_poller "$poll_log"
fi

# --- checks -----------------------------------------------------------------------------------
run_checks
bootstrap_token_controllers
e2e_suite
say "all checks passed"
