# shellcheck shell=bash disable=SC2154
# svcplane's install in a kind cluster and what real consumers see of its Endpoints and
# EndpointSlices (sourced by hack/kind-e2e.sh, which defines say, die, kubectl, $ns,
# $namespace, $ranges, $ip_family, $state and $TEST_SERVER_IMAGE). The test server answers
# with its pod's name; the client pod counts answers per pod.

requests=60
# A command run in a pod never waits longer than this: a stuck exec stream (kubelet or
# apiserver side) ends as a timeout with its own message instead of hanging the run.
exec_timeout=300

# pod_exec <pod> <command...>: the command run in the pod, bounded by $exec_timeout.
pod_exec() {
  local pod=$1 rc=0
  shift
  timeout --kill-after=10 "$exec_timeout" "$KUBE_DIR/kubectl" -n "$ns" exec "$pod" -- "$@" || rc=$?
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || echo "[kind-e2e] kubectl exec $pod -- $* gave no answer in ${exec_timeout}s" >&2
  return "$rc"
}

# workload: a Deployment of two test servers, a third test server with a hostname and a
# subdomain, Services of each kind, and a client pod.
workload() {
  say "workload: test servers, Services (ClusterIP, NodePort, headless, selectorless), client"
  kubectl create namespace "$ns" >&2
  local family_policy=SingleStack
  [ "$ip_family" = dual ] && family_policy=PreferDualStack
  kubectl -n "$ns" apply -f - >&2 <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      topologySpreadConstraints:
        - {maxSkew: 1, topologyKey: topology.kubernetes.io/zone, whenUnsatisfiable: DoNotSchedule, labelSelector: {matchLabels: {app: web}}}
      containers:
        - name: server
          image: $TEST_SERVER_IMAGE
          imagePullPolicy: Never
          env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
          ports: [{containerPort: 8080, name: http}]
          readinessProbe:
            httpGet: {path: /readyz, port: 8080}
            periodSeconds: 1
            failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: web-one, labels: {app: web}}
spec:
  hostname: one
  subdomain: web-headless
  containers:
    - name: server
      image: $TEST_SERVER_IMAGE
      imagePullPolicy: Never
      env: [{name: POD_NAME, valueFrom: {fieldRef: {fieldPath: metadata.name}}}]
      ports: [{containerPort: 8080, name: http}]
      readinessProbe:
        httpGet: {path: /readyz, port: 8080}
        periodSeconds: 1
        failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata: {name: client}
spec:
  containers:
    - name: client
      image: $TEST_SERVER_IMAGE
      imagePullPolicy: Never
      args: [serve, ":9090"]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  ipFamilyPolicy: $family_policy
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-nodeport}
spec:
  type: NodePort
  ipFamilyPolicy: $family_policy
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{port: 8080, targetPort: http}]
---
apiVersion: v1
kind: Service
metadata: {name: external}
spec:
  ports: [{port: 80, targetPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web-same-zone}
spec:
  trafficDistribution: PreferSameZone
  selector: {app: web}
  ports: [{port: 80, targetPort: http}]
YAML
  kubectl -n "$ns" wait --for=condition=Ready pod --all --timeout=120s >&2
  kubectl -n "$ns" get pods -o wide >&2
}

# count <url>: "<pod> <answers>" lines from $requests requests by the client pod.
count() { pod_exec client /test-server count "$1" "$requests"; }

# expect_pods <what> <url> <pod...>: every answer to the client's requests came from one of
# the pods, and each of them answered at least once. kube-proxy follows the slices within
# a sync (minSyncPeriod 1s), so a few tries are allowed; the answer counts are printed.
expect_pods() {
  local what=$1 url=$2
  shift 2
  local got want answers
  want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
  for try in $(seq 15); do
    answers=$(count "$url")
    got=$(awk '{ print $1 }' <<<"$answers" | sort | tr '\n' ' ')
    if [ "$got" = "$want" ]; then
      say "ok: $what -> $(tr '\n' ' ' <<<"$answers")$([ "$try" = 1 ] || echo "(try $try)")"
      return 0
    fi
    sleep 1
  done
  die "$what: answers from [$got], want [$want]; counts: $(tr '\n' ' ' <<<"$answers")"
}

# ready_in_slices <service> <pod>: the pod's ready condition in the Service's slices.
ready_in_slices() {
  kubectl -n "$ns" get endpointslices -l "kubernetes.io/service-name=$1" \
    -o jsonpath='{range .items[*].endpoints[*]}{.targetRef.name}={.conditions.ready}{"\n"}{end}' |
    awk -F= -v p="$2" '$1 == p { print $2; exit }'
}

wait_ready_in_slices() {
  local service=$1 pod=$2 want=$3
  for _ in $(seq 60); do
    [ "$(ready_in_slices "$service" "$pod")" = "$want" ] && return 0
    sleep 1
  done
  die "$service's slices: $pod ready=$(ready_in_slices "$service" "$pod"), want $want"
}

zone_of_node() { kubectl get node "$1" -o jsonpath='{.metadata.labels.topology\.kubernetes\.io/zone}'; }

# url <address> <port>: brackets for IPv6.
url() { if [[ $1 == *:* ]]; then echo "http://[$1]:$2/"; else echo "http://$1:$2/"; fi; }

# install_deployment: `svcplane manifests` applied, with the Secret and ConfigMap it expects.
install_deployment() {
  say "install: svcplane manifests --service-cluster-ip-range=$ranges --replicas=2"
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >&2
  kubectl -n "$namespace" create secret tls svcplane-webhook-tls --cert="$state/tls.crt" --key="$state/tls.key" \
    --dry-run=client -o yaml | kubectl apply -f - >&2
  kubectl -n "$namespace" create configmap svcplane-webhook-callers --from-file=ca.crt="$state/callers-ca.crt" \
    --dry-run=client -o yaml | kubectl apply -f - >&2
  kubectl apply --server-side -f "$state/svcplane.yaml" >&2
  kubectl -n "$namespace" rollout status deployment/svcplane --timeout=180s >&2
}

# The control-plane node and its kube-controller-manager's static pod.
control_plane() { kubectl get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}'; }
KCM_MANIFEST=/etc/kubernetes/manifests/kube-controller-manager.yaml

# kcm_controllers_flag: kube-controller-manager's --controllers as the manifests print it.
kcm_controllers_flag() { grep -o -m1 -- '--controllers=[^ ]*' "$state/svcplane.yaml"; }

# replace_kcm_manifest <node> <file>: the static pod's manifest replaced at once (through
# /etc/kubernetes: the node's /tmp is a tmpfs docker cp cannot reach).
replace_kcm_manifest() {
  docker cp "$2" "$1:/etc/kubernetes/kcm-next.yaml"
  docker exec "$1" mv /etc/kubernetes/kcm-next.yaml "$KCM_MANIFEST"
}

# wait_kcm <node> <container...>: kube-controller-manager's pod runs the new manifest (its
# --controllers is the manifests') and the named containers are ready.
wait_kcm() {
  local node=$1 pod="kube-controller-manager-$1" flag statuses ready=""
  shift
  flag=$(kcm_controllers_flag)
  for _ in $(seq 180); do
    statuses=$(kubectl -n kube-system get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}={.ready} {end}' 2>/dev/null || true)
    ready=1
    for c in "$@"; do [[ $statuses == *"$c=true"* ]] || ready=""; done
    if [ -n "$ready" ] && kubectl -n kube-system get pod "$pod" \
      -o jsonpath='{.spec.containers[?(@.name=="kube-controller-manager")].command}' 2>/dev/null |
      grep -q -F -- "$flag"; then
      say "static pod $pod: $statuses"
      return 0
    fi
    sleep 1
  done
  die "kube-controller-manager's pod did not come back with $flag and $* ready: $statuses"
}

# install_sidecar: the sidecar mode, as the manifests' comments say: everything applied,
# kube-controller-manager's --controllers replaced and the patch merged into its static pod
# (the certificates are in the node's /etc/kubernetes/svcplane since the cluster's start).
install_sidecar() {
  local node flag
  node=$(control_plane)
  flag=$(kcm_controllers_flag)
  say "install (sidecar): svcplane manifests --webhook-url=https://127.0.0.1:9443, applied; $node's kube-controller-manager patched"
  kubectl apply --server-side -f "$state/svcplane.yaml" >&2
  sed -n '/^# --- kube-controller-manager+strategic.yaml$/,$p' "$state/svcplane.yaml" | tail -n +2 |
    sed 's/^# //' >"$state/kcm-patch.yaml"
  [ -s "$state/kcm-patch.yaml" ] || die "no sidecar patch in svcplane manifests' output"
  docker cp "$node:$KCM_MANIFEST" "$state/kcm.yaml"
  grep -q -- '- --controllers=' "$state/kcm.yaml" || die "$KCM_MANIFEST has no --controllers to replace"
  sed -i "s/- --controllers=.*/- $flag/" "$state/kcm.yaml"
  kubectl patch --local -f "$state/kcm.yaml" --type=strategic --patch-file="$state/kcm-patch.yaml" -o yaml \
    >"$state/kcm-sidecar.yaml"
  replace_kcm_manifest "$node" "$state/kcm-sidecar.yaml"
  wait_kcm "$node" kube-controller-manager svcplane
  local forbidden
  forbidden=$(kubectl -n kube-system logs "kube-controller-manager-$node" -c svcplane | grep -c -i forbidden || true)
  [ "$forbidden" = 0 ] || die "the sidecar got $forbidden 'forbidden' answers, e.g.: $(kubectl -n kube-system logs "kube-controller-manager-$node" -c svcplane | grep -i -m1 forbidden | cut -c1-400)"
}

# start_poller <url> <log>: the client's requests, $requests at a time, until stop_poller.
# The loop runs while <log>.run exists: a batch that ends after stop_poller still appends to
# <log> by name, so the log's own presence cannot be the signal (that recreated it and kept
# the loop, and stop_poller's wait, going for ever).
start_poller() {
  local url=$1 log=$2
  : >"$log"
  : >"$log.run"
  local t
  for t in $(seq 30); do [ "$(count "$url" | awk '{ print $1 }' | sort | tr '\n' ' ')" = "$(
    kubectl -n "$ns" get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort | tr '\n' ' ')" ] && break; sleep 1; done
  (while [ -f "$log.run" ]; do
    echo "# $(date +%T)" >>"$log"
    local rc=0
    count "$url" >>"$log" 2>/dev/null || rc=$?
    case $rc in
      0) ;;
      124 | 137) echo "kubectl-exec-timeout 1" >>"$log" ;;
      *) echo "kubectl-exec-failed 1" >>"$log" ;;
    esac
  done) &
  poller=$!
  say "poller started: $url"
}

# stop_poller <log>: every request the poller sent was answered by a test server. A batch
# whose kubectl exec gave no answer in $exec_timeout is unknown, not failed: it is counted
# and said, and answered batches must follow svcplane's install.
stop_poller() {
  local log=$1 summary stuck
  rm -f "$log.run"
  wait "$poller" 2>/dev/null || true
  poller=
  summary=$(awk '!/^#/ { n[$1] += $2 } END { for (k in n) printf "%s %d, ", k, n[k] }' "$log")
  if grep -q -e '^error' -e '^kubectl-exec-failed' "$log"; then
    grep -B3 -e '^error' -e '^kubectl-exec-failed' "$log" | grep -e '^#' -e error -e failed | tr '\n' ' ' >&2
    echo >&2
    die "requests failed during the takeover: $summary"
  fi
  awk '/^# install/ { after = 1; next } after && !/^#/ && !/^kubectl-exec-timeout/ { ok = 1 } END { exit !ok }' "$log" ||
    die "no batch of requests answered after svcplane's install: $summary"
  stuck=$(grep -c '^kubectl-exec-timeout' "$log" || true)
  say "ok: no request failed during the takeover: $summary$([ "$stuck" = 0 ] || echo " ($stuck batches lost to a kubectl exec that gave no answer)")"
}

# takeover: kube-controller-manager restarted with the manifests' --controllers, as README's
# "Taking over from the in-tree controllers" says; the slices are adopted, not duplicated.
takeover() {
  local node flag
  node=$(control_plane)
  flag=$(kcm_controllers_flag)
  say "takeover: kube-controller-manager on $node with $flag"
  docker cp "$node:$KCM_MANIFEST" "$state/kcm.yaml"
  sed -i "s/- --controllers=.*/- $flag/" "$state/kcm.yaml"
  replace_kcm_manifest "$node" "$state/kcm.yaml"
  wait_kcm "$node" kube-controller-manager
  no_duplicate_endpoints
}

# no_duplicate_endpoints: no address appears twice among a Service's slices of one family.
no_duplicate_endpoints() {
  local svc dups
  for svc in web web-nodeport web-headless web-same-zone; do
    dups=$(kubectl -n "$ns" get endpointslices -l "kubernetes.io/service-name=$svc" \
      -o jsonpath='{range .items[*]}{range .endpoints[*]}{.addresses[0]}{"\n"}{end}{end}' | sort | uniq -d)
    [ -z "$dups" ] || die "$svc's slices list $dups more than once"
  done
  say "ok: no endpoint twice in any slice set; slices: $(kubectl -n "$ns" get endpointslices \
    -o jsonpath='{range .items[*]}{.metadata.labels.kubernetes\.io/service-name}={.metadata.labels.endpointslice\.kubernetes\.io/managed-by} {end}')"
}

run_checks() {
  if ! kubectl -n "$ns" get pod client >/dev/null 2>&1; then
    workload
  fi
  local pods all a
  pods=$(kubectl -n "$ns" get pods -l app=web -o jsonpath='{.items[*].metadata.name}')
  # shellcheck disable=SC2206
  all=($pods)
  for p in "${all[@]}"; do [ "$p" = web-one ] || { a=$p; break; }; done

  local t=$SECONDS
  for p in "${all[@]}"; do wait_ready_in_slices web "$p" true; done
  say "every pod ready in web's slices $((SECONDS - t))s after the pods were Ready"

  say "ClusterIP Service: every ClusterIP reaches every ready pod"
  for ip in $(kubectl -n "$ns" get service web -o jsonpath='{.spec.clusterIPs[*]}'); do
    expect_pods "ClusterIP $ip" "$(url "$ip" 80)" "${all[@]}"
  done
  expect_pods "DNS name web.$ns" "http://web.$ns/" "${all[@]}"

  say "NodePort Service: the node port on every node reaches every ready pod"
  local node_port
  node_port=$(kubectl -n "$ns" get service web-nodeport -o jsonpath='{.spec.ports[0].nodePort}')
  for addr in $(kubectl get nodes -o jsonpath='{range .items[*]}{.status.addresses[?(@.type=="InternalIP")].address}{" "}{end}'); do
    expect_pods "NodePort $addr:$node_port" "$(url "$addr" "$node_port")" "${all[@]}"
  done

  say "readiness: $a fails its probe, leaves rotation, comes back"
  pod_exec "$a" /test-server post http://127.0.0.1:8080/fail >&2
  wait_ready_in_slices web "$a" false
  local rest=()
  for p in "${all[@]}"; do [ "$p" = "$a" ] || rest+=("$p"); done
  expect_pods "ClusterIP, $a not ready" "http://web.$ns/" "${rest[@]}"
  expect_pods "NodePort, $a not ready" "$(url "$(kubectl get node "$(control_plane)" -o jsonpath='{.status.addresses[0].address}')" "$node_port")" "${rest[@]}"
  pod_exec "$a" /test-server post http://127.0.0.1:8080/recover >&2
  wait_ready_in_slices web "$a" true
  expect_pods "ClusterIP, $a ready again" "http://web.$ns/" "${all[@]}"

  say "DNS: the headless Service and <hostname>.<subdomain>"
  local want got one_ip
  want=$(kubectl -n "$ns" get pods -l app=web -o jsonpath='{range .items[*]}{range .status.podIPs[*]}{.ip}{"\n"}{end}{end}' | grep -v : | sort | tr '\n' ' ')
  got=$(pod_exec client /test-server lookup "web-headless.$ns.svc.cluster.local" | sort | tr '\n' ' ')
  [ "$got" = "$want" ] || die "web-headless.$ns resolves to [$got], want the pods' [$want]"
  say "ok: web-headless.$ns.svc.cluster.local -> $got"
  one_ip=$(kubectl -n "$ns" get pod web-one -o jsonpath='{.status.podIP}')
  got=$(pod_exec client /test-server lookup "one.web-headless.$ns.svc.cluster.local" | tr '\n' ' ')
  [ "$got" = "$one_ip " ] || die "one.web-headless.$ns resolves to [$got], want web-one's $one_ip"
  say "ok: one.web-headless.$ns.svc.cluster.local -> $got"

  say "selectorless Service: user-written Endpoints to web-one"
  kubectl -n "$ns" apply -f - >&2 <<YAML
apiVersion: v1
kind: Endpoints
metadata: {name: external}
subsets:
  - addresses: [{ip: "$one_ip"}]
    ports: [{port: 8080}]
YAML
  for _ in $(seq 30); do
    [ -n "$(kubectl -n "$ns" get endpointslices -l kubernetes.io/service-name=external -o jsonpath='{.items[*].endpoints[*].addresses[*]}')" ] && break
    sleep 1
  done
  expect_pods "selectorless Service external" "http://external.$ns/" web-one

  local zone same_zone=()
  zone=$(zone_of_node "$(kubectl -n "$ns" get pod client -o jsonpath='{.spec.nodeName}')")
  say "trafficDistribution PreferSameZone: the client in $zone reaches only the pods in $zone"
  for p in "${all[@]}"; do
    [ "$(zone_of_node "$(kubectl -n "$ns" get pod "$p" -o jsonpath='{.spec.nodeName}')")" != "$zone" ] || same_zone+=("$p")
  done
  [ ${#same_zone[@]} -gt 0 ] || die "no web pod in the client's zone $zone"
  expect_pods "PreferSameZone from $zone" "http://web-same-zone.$ns/" "${same_zone[@]}"
  no_duplicate_endpoints
}

# bootstrap_token_controllers: kube-controller-manager still runs the two controllers kubeadm
# adds to "*": bootstrapsigner signs cluster-info for a new token (without it no node could
# join), tokencleaner deletes an expired one.
bootstrap_token_controllers() {
  local node token id signed=""
  node=$(control_plane)
  token=$(docker exec "$node" kubeadm token create --ttl 10m)
  id=${token%%.*}
  for _ in $(seq 60); do
    signed=$(kubectl -n kube-public get configmap cluster-info -o jsonpath="{.data.jws-kubeconfig-$id}")
    [ -n "$signed" ] && break
    sleep 1
  done
  [ -n "$signed" ] || die "bootstrapsigner did not sign cluster-info for token $id"
  docker exec "$node" kubeadm token delete "$id" >/dev/null
  token=$(docker exec "$node" kubeadm token create --ttl 1s)
  id=${token%%.*}
  for _ in $(seq 60); do
    kubectl -n kube-system get secret "bootstrap-token-$id" >/dev/null 2>&1 || break
    sleep 1
  done
  ! kubectl -n kube-system get secret "bootstrap-token-$id" >/dev/null 2>&1 ||
    die "tokencleaner did not delete the expired token $id"
  say "ok: bootstrapsigner signed cluster-info for a new token, tokencleaner deleted an expired one"
}

# e2e_suite: svcplane's e2e suite (tests/tests/e2e) against this cluster. The fault suites
# and the differential suite need control planes of their own and skip themselves here.
e2e_suite() {
  local skip=()
  if [ -n "${KIND_SIDECAR:-}" ]; then
    # It applies the Deployment mode's manifests (dry run) over the registration: the
    # sidecar's URL, applied by kubectl's field manager, would stay beside their Service.
    skip+=(--skip product::manifests_apply_cleanly)
  fi
  # RequireDualStack needs a dual-stack cluster.
  [ "$ip_family" = dual ] || skip+=(--skip webhook::dual_stack)
  say "e2e suite against the cluster: cargo test -p e2e --test e2e ${skip[*]}"
  cargo test -p e2e --test e2e --locked -- "${skip[@]}" >&2 || die "the e2e suite failed against the kind cluster"
}
