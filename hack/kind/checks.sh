# shellcheck shell=bash disable=SC2154
# What real consumers see of svcplane's Endpoints and EndpointSlices, in a kind cluster
# (sourced by hack/kind-e2e.sh, which defines say, die, kubectl and $ns, $ip_family).
# The test server answers with its pod's name; the client pod counts answers per pod.

requests=60

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
          image: svcplane-test-server:e2e
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
      image: svcplane-test-server:e2e
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
      image: svcplane-test-server:e2e
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
YAML
  kubectl -n "$ns" wait --for=condition=Ready pod --all --timeout=120s >&2
  kubectl -n "$ns" get pods -o wide >&2
}

# count <url>: "<pod> <answers>" lines from $requests requests by the client pod.
count() { kubectl -n "$ns" exec client -- /test-server count "$1" "$requests"; }

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

# url <address> <port>: brackets for IPv6.
url() { if [[ $1 == *:* ]]; then echo "http://[$1]:$2/"; else echo "http://$1:$2/"; fi; }

# install_sidecar: the sidecar mode of `svcplane manifests --webhook-url=...`: everything but
# the Deployment applied, the commented container added to kube-controller-manager's static
# pod, with the serving certificate in a hostPath.
install_sidecar() {
  local node manifest=/etc/kubernetes/manifests/kube-controller-manager.yaml args kubeconfig_volume
  node=$(kubectl get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}')
  say "install (sidecar): svcplane manifests --webhook-url=https://127.0.0.1:9443, container in $node's kube-controller-manager"
  "$svcplane" manifests --service-cluster-ip-range="$ranges" --image=svcplane:e2e \
    --webhook-url=https://127.0.0.1:9443 --ca-bundle-file="$work/ca.crt" >"$work/svcplane.yaml"
  awk 'BEGIN { RS = "\n---\n"; ORS = "\n---\n" } !/\nkind: (Deployment|PodDisruptionBudget)\n/' \
    "$work/svcplane.yaml" >"$work/svcplane-sidecar.yaml"
  kubectl apply --server-side -f "$work/svcplane-sidecar.yaml" >&2
  args=$(awk '/^#   sidecar:/ { s = 1 } s && /^#     image:/ { s = 0 } s && /^#     - / { sub(/^#     - /, ""); print }' \
    "$work/svcplane.yaml" | jq -R . | jq -s -c .)
  [ "$args" != "[]" ] || die "no sidecar snippet in svcplane manifests' output"
  docker exec "$node" mkdir -p /etc/svcplane/tls
  docker cp "$work/tls.crt" "$node:/etc/svcplane/tls/tls.crt"
  docker cp "$work/tls.key" "$node:/etc/svcplane/tls/tls.key"
  docker cp "$node:$manifest" "$work/kcm.yaml"
  kubectl create --dry-run=client -o json -f "$work/kcm.yaml" >"$work/kcm.json"
  kubeconfig_volume=$(jq -r '.spec.volumes[] | select(.hostPath.path == "/etc/kubernetes/controller-manager.conf") | .name' "$work/kcm.json")
  # controller-manager.conf is root's alone (0600), and the image runs as 65532.
  jq --argjson args "$args" --arg kv "$kubeconfig_volume" '
    .spec.containers += [{name: "svcplane", image: "svcplane:e2e", imagePullPolicy: "Never", args: $args,
      securityContext: {runAsUser: 0},
      volumeMounts: [{name: "svcplane-tls", mountPath: "/etc/svcplane/tls", readOnly: true},
                     {name: $kv, mountPath: "/etc/kubernetes/controller-manager.conf", readOnly: true}]}]
    | .spec.volumes += [{name: "svcplane-tls", hostPath: {path: "/etc/svcplane/tls", type: "Directory"}}]' \
    "$work/kcm.json" >"$work/kcm-sidecar.json"
  docker cp "$work/kcm-sidecar.json" "$node:/etc/kubernetes/kcm-sidecar.yaml"
  docker exec "$node" mv /etc/kubernetes/kcm-sidecar.yaml "$manifest"
  local pod="kube-controller-manager-$node" ready=""
  for _ in $(seq 120); do
    ready=$(kubectl -n kube-system get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}={.ready} {end}' 2>/dev/null || true)
    [[ $ready == *svcplane=true* && $ready == *kube-controller-manager=true* ]] && break
    sleep 1
  done
  say "static pod $pod: $ready"
  sleep 10
  local forbidden
  forbidden=$(kubectl -n kube-system logs "$pod" -c svcplane 2>/dev/null | grep -c -i forbidden || true)
  if [ "$forbidden" != 0 ]; then
    say "FINDING: the sidecar, as kube-controller-manager's user, got $forbidden 'forbidden' answers; e.g.:"
    kubectl -n kube-system logs "$pod" -c svcplane 2>/dev/null | grep -i -m2 forbidden | cut -c1-400 >&2
    say "binding svcplane's roles to system:kube-controller-manager too"
    kubectl create clusterrolebinding svcplane-webhook-kcm --clusterrole=svcplane-webhook --user=system:kube-controller-manager >&2
    kubectl create clusterrolebinding svcplane-controllers-kcm --clusterrole=svcplane-controllers --user=system:kube-controller-manager >&2
    kubectl -n "$namespace" create rolebinding svcplane-leader-election-kcm --role=svcplane-leader-election --user=system:kube-controller-manager >&2
  fi
  for _ in $(seq 120); do
    ready=$(kubectl -n kube-system get pod "$pod" -o jsonpath='{range .status.containerStatuses[*]}{.name}={.ready} {end}' 2>/dev/null || true)
    [[ $ready == *svcplane=true* ]] && break
    sleep 1
  done
  [[ $ready == *svcplane=true* ]] || die "the svcplane sidecar is not ready: $ready"
  say "sidecar ready: $ready"
}

# start_poller <url> <log>: the client's requests, 10 at a time, until stop_poller.
start_poller() {
  local url=$1 log=$2
  : >"$log"
  local t
  for t in $(seq 30); do [ "$(count "$url" | awk '{ print $1 }' | sort | tr '\n' ' ')" = "$(
    kubectl -n "$ns" get pods -l app=web -o jsonpath='{range .items[*]}{.metadata.name}{"\n"}{end}' | sort | tr '\n' ' ')" ] && break; sleep 1; done
  (while [ -f "$log" ]; do
    echo "# $(date +%T)" >>"$log"
    count "$url" >>"$log" 2>/dev/null || echo "kubectl-exec-failed 1" >>"$log"
  done) &
  poller=$!
  say "poller started: $url"
}

# stop_poller <log>: every request the poller sent was answered by a test server.
stop_poller() {
  local log=$1 summary
  mv "$log" "$log.done"
  wait "$poller" 2>/dev/null || true
  summary=$(awk '!/^#/ { n[$1] += $2 } END { for (k in n) printf "%s %d, ", k, n[k] }' "$log.done")
  if grep -q -e '^error' -e '^kubectl-exec-failed' "$log.done"; then
    grep -B3 -e '^error' -e '^kubectl-exec-failed' "$log.done" | grep -e '^#' -e error -e failed | tr '\n' ' ' >&2
    echo >&2
    die "requests failed during the takeover: $summary"
  fi
  say "ok: no request failed during the takeover: $summary"
}

# takeover: kube-controller-manager restarted without the endpoint controllers, as
# README's "Taking over from the in-tree controllers" says; the slices are adopted, not
# duplicated.
takeover() {
  local node manifest=/etc/kubernetes/manifests/kube-controller-manager.yaml
  node=$(kubectl get nodes -l node-role.kubernetes.io/control-plane -o jsonpath='{.items[0].metadata.name}')
  say "takeover: kube-controller-manager on $node without the endpoint controllers"
  docker exec "$node" sed -i \
    's/--controllers=\*,bootstrapsigner,tokencleaner$/--controllers=*,bootstrapsigner,tokencleaner,-endpoints-controller,-endpointslice-controller,-endpointslice-mirroring-controller/' \
    "$manifest"
  docker exec "$node" grep -q -- '-endpointslice-mirroring-controller' "$manifest" ||
    die "could not rewrite --controllers in $manifest"
  for _ in $(seq 120); do
    kubectl -n kube-system get pod "kube-controller-manager-$node" -o jsonpath='{.spec.containers[0].command}' 2>/dev/null |
      grep -q -- '-endpointslice-mirroring-controller' &&
      [ "$(kubectl -n kube-system get pod "kube-controller-manager-$node" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" = True ] &&
      break
    sleep 1
  done
  say "kube-controller-manager restarted without the endpoint controllers"
  no_duplicate_endpoints
}

# no_duplicate_endpoints: no address appears twice among a Service's slices of one family.
no_duplicate_endpoints() {
  local svc dups
  for svc in web web-nodeport web-headless; do
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
  kubectl -n "$ns" exec "$a" -- /test-server post http://127.0.0.1:8080/fail >&2
  wait_ready_in_slices web "$a" false
  local rest=()
  for p in "${all[@]}"; do [ "$p" = "$a" ] || rest+=("$p"); done
  expect_pods "ClusterIP, $a not ready" "http://web.$ns/" "${rest[@]}"
  expect_pods "NodePort, $a not ready" "$(url "$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[0].address}')" "$node_port")" "${rest[@]}"
  kubectl -n "$ns" exec "$a" -- /test-server post http://127.0.0.1:8080/recover >&2
  wait_ready_in_slices web "$a" true
  expect_pods "ClusterIP, $a ready again" "http://web.$ns/" "${all[@]}"

  say "DNS: the headless Service and <hostname>.<subdomain>"
  local want got one_ip
  want=$(kubectl -n "$ns" get pods -l app=web -o jsonpath='{range .items[*]}{range .status.podIPs[*]}{.ip}{"\n"}{end}{end}' | grep -v : | sort | tr '\n' ' ')
  got=$(kubectl -n "$ns" exec client -- /test-server lookup "web-headless.$ns.svc.cluster.local" | sort | tr '\n' ' ')
  [ "$got" = "$want" ] || die "web-headless.$ns resolves to [$got], want the pods' [$want]"
  say "ok: web-headless.$ns.svc.cluster.local -> $got"
  one_ip=$(kubectl -n "$ns" get pod web-one -o jsonpath='{.status.podIP}')
  got=$(kubectl -n "$ns" exec client -- /test-server lookup "one.web-headless.$ns.svc.cluster.local" | tr '\n' ' ')
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
  no_duplicate_endpoints
}
