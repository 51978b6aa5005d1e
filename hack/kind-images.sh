#!/usr/bin/env bash
# Builds everything a kind cluster for svcplane needs, from sources this machine reaches
# (Debian packages, the Go module proxy, crates.io), into a cache keyed by version. Each
# step is skipped when its output is already there, so a second run returns at once.
#
#   docker   the Docker engine (installs docker.io and starts dockerd when run as root)
#   go       kind, the node's Kubernetes binaries, containerd, crictl, CoreDNS, pause,
#            the test server
#   base     the node's Debian root filesystem (mmdebstrap), imported as a Docker image
#   images   the control-plane, CoreDNS and pause images, saved as tarballs
#   node     the kind node image, those images preloaded into its containerd
#   svcplane svcplane's image (static musl binary on scratch) and the test server's
#
# Usage: hack/kind-images.sh [step...]   (default: every step, in the order above)
# Prints `NODE_IMAGE=... KIND=... ETCD_TAG=... SVCPLANE_BIN=...` lines on stdout at the end; progress goes to stderr.
#
# Environment:
#   SVCPLANE_CACHE   cache root (default: $HOME/.cache/svcplane)
#   KUBE_VERSION     Kubernetes release (default: v1.37.2)
#   KIND_VERSION     kind release (default: v0.33.0)
set -euo pipefail
cd "$(dirname "$0")/.."

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
KIND_VERSION=${KIND_VERSION:-v0.33.0}
CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.3.4}
CRICTL_VERSION=${CRICTL_VERSION:-v1.37.0}
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.6}
DEBIAN_SUITE=${DEBIAN_SUITE:-bookworm}
CACHE=${SVCPLANE_CACHE:-$HOME/.cache/svcplane}
KIND_CACHE="$CACHE/kind"
GO_BIN="$KIND_CACHE/bin/kube-$KUBE_VERSION-containerd-$CONTAINERD_VERSION"
KIND_BIN="$CACHE/bin/kind-$KIND_VERSION/kind"
BASE_IMAGE="svcplane-kind-base:$DEBIAN_SUITE"
NODE_IMAGE="svcplane-kind-node:$KUBE_VERSION"
IMAGE_DIR="$KIND_CACHE/images/$KUBE_VERSION"
TIMES="$KIND_CACHE/build-times.log"

say() { printf '[kind-images] %s\n' "$*" >&2; }
die() { printf '[kind-images] error: %s\n' "$*" >&2; exit 1; }
mkdir -p "$KIND_CACHE" "$IMAGE_DIR" "$GO_BIN"

# timed <label> <command...>: runs the command, records how long it took.
timed() {
  local label=$1 start=$SECONDS
  shift
  "$@"
  local took=$((SECONDS - start))
  say "$label took ${took}s"
  printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "$label" "$took" >>"$TIMES"
}

# --- docker -------------------------------------------------------------------------------
# bounded_runtime: prints the path of hack/kind/runc-bounded's cached copy when this host's
# capability bounding set lacks one that privileged containers (kind's nodes) are given.
bounded_runtime() {
  local last bounding
  last=$(cat /proc/sys/kernel/cap_last_cap)
  bounding=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
  [ $(( bounding & ((1 << (last + 1)) - 1) )) -ne $(( (1 << (last + 1)) - 1 )) ] || return 0
  mkdir -p "$KIND_CACHE/bin"
  install -m 0755 hack/kind/runc-bounded "$KIND_CACHE/bin/runc-bounded"
  echo "$KIND_CACHE/bin/runc-bounded"
}

docker_up() {
  if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "Docker is not installed and this is not root: install Docker (Debian: apt-get install docker.io) and run again."
    say "installing docker.io from Debian packages"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io >&2; } ||
      die "apt-get install docker.io failed (see above)."
  fi
  local runtime
  runtime=$(bounded_runtime)
  if docker info >/dev/null 2>&1; then
    [ -z "$runtime" ] || [ "$(docker info -f '{{.DefaultRuntime}}')" = runc-bounded ] && return 0
    if [ "$(id -u)" != 0 ] || [ -n "$(docker ps -q)" ]; then
      die "this host's capability bounding set lacks capabilities privileged containers get, and the running dockerd does not use hack/kind/runc-bounded: restart it with --add-runtime runc-bounded=$runtime --default-runtime runc-bounded"
    fi
    say "restarting dockerd with runc-bounded as its default runtime (this host's bounding set: $(awk '/^CapBnd:/ { print $2 }' /proc/self/status))"
    local pid
    pid=$(pidof dockerd)
    kill "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.5; done
  fi
  [ "$(id -u)" = 0 ] || die "the Docker daemon is not running and this is not root: start it (systemctl start docker) and run again."
  local log="$KIND_CACHE/dockerd.log" args=()
  [ -z "$runtime" ] || args=(--add-runtime "runc-bounded=$runtime" --default-runtime runc-bounded)
  say "starting dockerd ${args[*]} in the background (log: $log)"
  nohup dockerd "${args[@]}" >"$log" 2>&1 &
  for _ in $(seq 60); do
    docker info >/dev/null 2>&1 && { say "dockerd is up ($(docker version -f '{{.Server.Version}}'))"; return 0; }
    kill -0 $! 2>/dev/null || break
    sleep 1
  done
  tail -n 20 "$log" >&2
  die "dockerd did not start (last lines of $log above)."
}

step_docker() { docker_up; }

# --- go -----------------------------------------------------------------------------------
export GOTOOLCHAIN=local GOFLAGS=-mod=mod
export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$CACHE/go/mod}
export GOCACHE=${GOCACHE_OVERRIDE:-$CACHE/go/build}

# go_install <dir> <label> <cgo> <tags> <package@version...>: static binaries into <dir>,
# unless the first one is there already.
go_install() {
  local dir=$1 label=$2 cgo=$3 tags=$4
  shift 4
  local first=${1%@*}
  [ -x "$dir/${first##*/}" ] && return 0
  command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 and run again."
  mkdir -p "$dir"
  say "building $label ($*)"
  timed "go build $label" env GOBIN="$dir" CGO_ENABLED="$cgo" nice -n 15 \
    go install -trimpath -tags "$tags" -ldflags "-s -w" "$@" ||
    die "go install $* failed (see above)."
}

step_go() {
  go_install "$(dirname "$KIND_BIN")" "kind $KIND_VERSION" 0 "" "sigs.k8s.io/kind@$KIND_VERSION"
  # svcplane's own small programs: the sandbox's pause and the e2e test server.
  if [ ! -x "$GO_BIN/pause" ] || [ ! -x "$GO_BIN/test-server" ] ||
    [ -n "$(find hack/kind/images -newer "$GO_BIN/test-server" -name '*.go')" ]; then
    say "building pause and test-server (hack/kind/images)"
    (cd hack/kind/images && CGO_ENABLED=0 timed "go build pause, test-server" nice -n 15 \
      go build -trimpath -ldflags "-s -w" -o "$GO_BIN/" ./pause ./test-server) ||
      die "go build of hack/kind/images failed (see above)."
  fi
  local cd=github.com/containerd/containerd/v2/cmd
  go_install "$GO_BIN" "containerd $CONTAINERD_VERSION" 0 "no_aufs no_zfs no_btrfs no_devmapper" \
    "$cd/containerd@$CONTAINERD_VERSION" "$cd/ctr@$CONTAINERD_VERSION" \
    "$cd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  go_install "$GO_BIN" "crictl $CRICTL_VERSION" 0 "" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  go_install "$GO_BIN/coredns-$COREDNS_VERSION" "CoreDNS $COREDNS_VERSION" 0 "" \
    "github.com/coredns/coredns@$COREDNS_VERSION"
  # A second kube-bins.sh would build the same binaries again, side by side.
  while pgrep -f 'kube-bins[.]sh' >/dev/null; do
    say "another hack/kube-bins.sh is running; waiting for it to finish"
    sleep 30
  done
  local start=$SECONDS
  KUBE_DIR=$(KUBE_VERSION=$KUBE_VERSION hack/kube-bins.sh kubelet kubeadm kube-proxy kube-scheduler | tail -n1)
  [ $((SECONDS - start)) -lt 5 ] || printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "kube-bins (node binaries)" "$((SECONDS - start))" >>"$TIMES"
  export KUBE_DIR
}

# --- base ---------------------------------------------------------------------------------
# The node's userspace: what kubelet, kube-proxy, containerd and kind's entrypoint call
# (systemd, iptables/nftables, conntrack, mount tools), runc and the CNI plugins (bridge,
# host-local, loopback, portmap) from Debian packages.
BASE_PACKAGES=systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,e2fsprogs,runc,containernetworking-plugins,iputils-ping,netcat-openbsd,dnsutils

# build_rootfs <tar>: the Debian root filesystem, minus the services a node container must
# not start, with journald not reading the host's kmsg.
build_rootfs() {
  local tar=$1
  command -v mmdebstrap >/dev/null || {
    [ "$(id -u)" = 0 ] || die "mmdebstrap is missing: apt-get install mmdebstrap"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mmdebstrap >&2
  }
  say "building the $DEBIAN_SUITE root filesystem with mmdebstrap (Debian packages)"
  # The hooks' "$1" is mmdebstrap's root directory, expanded by mmdebstrap.
  # shellcheck disable=SC2016
  timed "rootfs ($DEBIAN_SUITE, mmdebstrap)" nice -n 15 mmdebstrap --variant=minbase \
    --include="$BASE_PACKAGES" \
    --customize-hook='rm -f "$1"/etc/systemd/system/*.wants/* "$1"/lib/systemd/system/multi-user.target.wants/* "$1"/lib/systemd/system/local-fs.target.wants/* "$1"/lib/systemd/system/basic.target.wants/*' \
    --customize-hook='rm -f "$1"/lib/systemd/system/sockets.target.wants/*udev* "$1"/lib/systemd/system/sockets.target.wants/*initctl* "$1"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service' \
    --customize-hook='echo ReadKMsg=no >>"$1"/etc/systemd/journald.conf; ln -sf /usr/lib/systemd/systemd "$1"/sbin/init; mkdir -p "$1"/etc/kubernetes/manifests "$1"/opt/cni/bin' \
    --customize-hook='for p in bridge host-local loopback portmap; do ln -sf /usr/lib/cni/$p "$1"/opt/cni/bin/$p; done' \
    --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man' \
    "$DEBIAN_SUITE" "$tar.partial.tar" >&2 || die "mmdebstrap failed (see above)."
  mv "$tar.partial.tar" "$tar"
}

step_base() {
  docker_up
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE is there"
    return
  fi
  local tar="$KIND_CACHE/rootfs-$DEBIAN_SUITE.tar"
  [ -f "$tar" ] || build_rootfs "$tar"
  # STOPSIGNAL is set by hack/kind/node.Dockerfile: docker import cannot.
  timed "docker import $BASE_IMAGE" docker import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    "$tar" "$BASE_IMAGE" >/dev/null
  rm -f "$tar"
  say "base image $BASE_IMAGE: $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec)"
}

# --- images -------------------------------------------------------------------------------
# The images kubeadm and the node's containerd ask for, under the names they ask for. The
# etcd image is the etcd hack/kube-bins.sh builds; hack/kind/cluster.yaml points kubeadm at
# its tag (kubeadm's default names an etcd this machine does not build).
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
ETCD_TAG="${ETCD_VERSION#v}-0"
PAUSE_TAGS=(3.10.2 3.10)

# scratch_image <tar> <binary> <entrypoint> <tag...>: one static binary on an empty base.
scratch_image() {
  local tar=$1 binary=$2 entrypoint=$3
  shift 3
  [ -f "$tar" ] && return 0
  local ctx
  ctx=$(mktemp -d)
  cp "$binary" "$ctx/"
  printf 'FROM scratch\nCOPY %s %s\nENV PATH=/usr/local/bin:/\nENTRYPOINT ["%s"]\n' \
    "$(basename "$binary")" "$entrypoint" "$entrypoint" >"$ctx/Dockerfile"
  local args=()
  for t in "$@"; do args+=(-t "$t"); done
  docker build -q "${args[@]}" "$ctx" >/dev/null || die "docker build of $1 failed"
  rm -rf "$ctx"
  docker save -o "$tar.tmp" "$@" && mv "$tar.tmp" "$tar"
  say "image $1: $(docker image inspect -f '{{.Size}}' "$1" | numfmt --to=iec)"
}

step_images() {
  docker_up
  [ -n "${KUBE_DIR:-}" ] || step_go
  local r=registry.k8s.io k=$KUBE_DIR start=$SECONDS
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    scratch_image "$IMAGE_DIR/$c.tar" "$k/$c" "/usr/local/bin/$c" "$r/$c:$KUBE_VERSION"
  done
  scratch_image "$IMAGE_DIR/etcd.tar" "$k/etcd" /usr/local/bin/etcd "$r/etcd:$ETCD_TAG"
  scratch_image "$IMAGE_DIR/coredns.tar" "$GO_BIN/coredns-$COREDNS_VERSION/coredns" /coredns \
    "$r/coredns/coredns:$COREDNS_VERSION"
  local pause_tags=()
  for t in "${PAUSE_TAGS[@]}"; do pause_tags+=("$r/pause:$t"); done
  scratch_image "$IMAGE_DIR/pause.tar" "$GO_BIN/pause" /pause "${pause_tags[@]}"
  # kube-proxy calls iptables, nft and conntrack: it runs on the node's own userspace.
  if [ ! -f "$IMAGE_DIR/kube-proxy.tar" ]; then
    local ctx
    ctx=$(mktemp -d)
    cp "$k/kube-proxy" "$ctx/"
    printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$BASE_IMAGE" >"$ctx/Dockerfile"
    docker build -q -t "$r/kube-proxy:$KUBE_VERSION" "$ctx" >/dev/null || die "docker build of kube-proxy failed"
    rm -rf "$ctx"
    docker save -o "$IMAGE_DIR/kube-proxy.tar.tmp" "$r/kube-proxy:$KUBE_VERSION"
    mv "$IMAGE_DIR/kube-proxy.tar.tmp" "$IMAGE_DIR/kube-proxy.tar"
  fi
  [ $((SECONDS - start)) -lt 2 ] || printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "component images" "$((SECONDS - start))" >>"$TIMES"
}

# --- node -------------------------------------------------------------------------------
# kind's node contract, read from its `build node-image` and base image: systemd as PID 1
# behind kind's entrypoint, containerd with kind's config, kubelet/kubeadm/kubectl in
# /usr/bin, /kind/version, and the images kubeadm lists already in containerd's k8s.io
# namespace. The entrypoint, containerd config and systemd units are kind's own files, used
# from the kind module (not copied into this repository).
KIND_FILES=$GOMODCACHE/sigs.k8s.io/kind@$KIND_VERSION/images/base/files

step_node() {
  docker_up
  if docker image inspect "$NODE_IMAGE" >/dev/null 2>&1; then
    say "node image $NODE_IMAGE is there"
    return
  fi
  [ -n "${KUBE_DIR:-}" ] || step_go
  docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || step_base
  step_images
  [ -d "$KIND_FILES" ] || (cd /tmp && go mod download "sigs.k8s.io/kind@$KIND_VERSION") ||
    die "could not download sigs.k8s.io/kind@$KIND_VERSION for its node files"
  local start=$SECONDS ctx
  ctx=$(mktemp -d)
  cp -r "$KIND_FILES" "$ctx/files"
  chmod -R u+w "$ctx/files"
  mkdir "$ctx/bin"
  cp "$GO_BIN"/{containerd,ctr,containerd-shim-runc-v2,crictl} "$KUBE_DIR"/{kubelet,kubeadm,kubectl} "$ctx/bin/"
  cp hack/kind/node.Dockerfile "$ctx/Dockerfile"
  cp hack/kind/default-storage.yaml hack/kind/runc-bounded hack/kind/containerd-oom.conf "$ctx/"
  say "building the node's file system (docker build)"
  docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg KUBE_VERSION="$KUBE_VERSION" \
    -t "$NODE_IMAGE-unloaded" "$ctx" >/dev/null || die "docker build of the node image failed"
  rm -rf "$ctx"

  say "preloading $(find "$IMAGE_DIR" -name '*.tar' | wc -l) images into the node's containerd"
  local builder
  builder=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$NODE_IMAGE-unloaded" infinity)
  # shellcheck disable=SC2064
  trap "docker rm -f $builder >/dev/null 2>&1" EXIT
  docker exec "$builder" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  for _ in $(seq 30); do docker exec "$builder" ctr version >/dev/null 2>&1 && break; sleep 1; done
  for tar in "$IMAGE_DIR"/*.tar; do
    docker exec -i "$builder" ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned \
      --all-platforms --no-unpack --digests - <"$tar" >/dev/null 2>&1 || die "import of $tar failed"
  done
  docker exec "$builder" ctr -n k8s.io images list -q | grep -v -e '^sha256:' -e '^import-' | sed 's/^/[kind-images]   /' >&2
  docker exec "$builder" bash -c 'kill $(pidof containerd); while pidof containerd >/dev/null; do sleep 0.2; done; rm -f /tmp/containerd.log'
  docker commit --change 'ENTRYPOINT [ "/usr/local/bin/entrypoint", "/sbin/init" ]' "$builder" "$NODE_IMAGE" >/dev/null
  docker rm -f "$builder" >/dev/null
  trap - EXIT
  docker rmi "$NODE_IMAGE-unloaded" >/dev/null
  printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "node image" "$((SECONDS - start))" >>"$TIMES"
  say "node image $NODE_IMAGE: $(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | numfmt --to=iec)"
}

# --- svcplane -------------------------------------------------------------------------------
SVCPLANE_IMAGE=${SVCPLANE_IMAGE:-svcplane:e2e}
TEST_SERVER_IMAGE=svcplane-test-server:e2e
MUSL=x86_64-unknown-linux-musl

step_svcplane() {
  docker_up
  [ -x "$GO_BIN/test-server" ] || step_go
  local ctx
  ctx=$(mktemp -d)
  cp "$GO_BIN/test-server" "$ctx/"
  printf 'FROM scratch\nCOPY test-server /test-server\nUSER 65532:65532\nENTRYPOINT ["/test-server"]\nCMD ["serve"]\n' >"$ctx/Dockerfile"
  docker build -q -t "$TEST_SERVER_IMAGE" "$ctx" >/dev/null || die "docker build of $TEST_SERVER_IMAGE failed"
  rm -rf "$ctx"

  command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) and run again."
  rustup target list --installed 2>/dev/null | grep -qx "$MUSL" || {
    say "adding the Rust target $MUSL"
    rustup target add "$MUSL" >&2 || die "rustup target add $MUSL failed"
  }
  command -v musl-gcc >/dev/null || {
    [ "$(id -u)" = 0 ] || die "musl-gcc is missing (ring's C code): apt-get install musl-tools"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >&2
  }
  local target_dir=${CARGO_TARGET_DIR:-target}
  say "building svcplane for $MUSL (cargo build --release)"
  timed "cargo build --release svcplane ($MUSL)" nice -n 15 \
    cargo build --release --locked --target "$MUSL" -p svcplane --bin svcplane >&2 ||
    die "cargo build of svcplane for $MUSL failed (see above)."
  ctx=$(mktemp -d)
  cp "$target_dir/$MUSL/release/svcplane" "$ctx/"
  docker build -q -f hack/kind/svcplane.Dockerfile -t "$SVCPLANE_IMAGE" "$ctx" >/dev/null ||
    die "docker build of $SVCPLANE_IMAGE failed"
  rm -rf "$ctx"
  say "images $SVCPLANE_IMAGE: $(docker image inspect -f '{{.Size}}' "$SVCPLANE_IMAGE" | numfmt --to=iec), $TEST_SERVER_IMAGE: $(docker image inspect -f '{{.Size}}' "$TEST_SERVER_IMAGE" | numfmt --to=iec)"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(docker go base images node svcplane)
for s in "${steps[@]}"; do
  declare -F "step_$s" >/dev/null || die "unknown step $s"
  "step_$s"
done
target_dir=${CARGO_TARGET_DIR:-target}
[[ $target_dir == /* ]] || target_dir="$PWD/$target_dir"
printf 'NODE_IMAGE=%s\nKIND=%s\nETCD_TAG=%s\nSVCPLANE_BIN=%s\n' "$NODE_IMAGE" "$KIND_BIN" "$ETCD_TAG" \
  "$target_dir/$MUSL/release/svcplane"
