#!/usr/bin/env bash
# Builds everything a kind cluster for svcplane needs, from sources this machine reaches
# (Debian packages, the Go module proxy, crates.io), into a cache keyed by version and by the
# contents of what goes in. Each step is skipped when its output is already there, so a
# second run returns at once.
#
#   docker   the Docker engine (installs docker.io and starts dockerd when run as root)
#   go       kind, the node's Kubernetes binaries and etcd (hack/kube-bins.sh), containerd,
#            runc, the CNI plugins, crictl, CoreDNS, pause, the test server
#   base     the node's Debian root filesystem (mmdebstrap), imported as a Docker image
#   images   the control-plane, etcd, CoreDNS and pause images, saved as tarballs
#   node     the kind node image, those images preloaded into its containerd
#   svcplane svcplane's image (the debug binary hack/test.sh's cargo builds already compile,
#            with its shared libraries) and the test server's
#
# Usage: hack/kind-images.sh [step...]   (default: every step, in the order above)
# Prints `NODE_IMAGE=... KIND=... KUBE_DIR=... SVCPLANE_BIN=... SVCPLANE_IMAGE=...
# TEST_SERVER_IMAGE=...` lines on stdout at the end (those of steps not run are empty);
# progress goes to stderr.
#
# Environment:
#   SVCPLANE_CACHE    cache root (default: $HOME/.cache/svcplane)
#   CARGO_TARGET_DIR  cargo's build directory (default: $SVCPLANE_CACHE/target, as hack/test.sh)
#   KUBE_VERSION      Kubernetes release (default: v1.37.2)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" kind-images

# The versions kind v0.33.0's base image pins (images/base/Dockerfile), except crictl, whose
# releases follow Kubernetes' minor versions, and etcd and CoreDNS, which are the ones
# kubeadm v1.37 asks for (`kubeadm config images list`).
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
KIND_VERSION=v0.33.0
CONTAINERD_VERSION=v2.3.4
RUNC_VERSION=v1.4.3
CNI_PLUGINS_VERSION=v1.9.1
CRICTL_VERSION=v1.37.0
COREDNS_VERSION=v1.14.6
ETCD_VERSION=v3.7.0
DEBIAN_SUITE=bookworm
KIND_CACHE="$SVCPLANE_CACHE/kind"
GO_BIN="$KIND_CACHE/bin"
KIND_BIN="$SVCPLANE_CACHE/bin/kind-$KIND_VERSION/kind"
IMAGE_DIR="$KIND_CACHE/images"
TIMES="$KIND_CACHE/build-times.log"

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

# key <text> <file...>: a short hash of the text and the files' contents, for cache names.
key() {
  local text=$1
  shift
  { echo "$text"; cat "$@"; } | sha256sum | cut -c1-12
}

# prune <repository> <keep>: removes all but the <keep> newest tags of the repository (the
# key of what went in changed); an image a container still uses stays.
prune() {
  docker images "$1" --format '{{.Tag}}' | tail -n +"$(($2 + 1))" |
    while read -r tag; do docker rmi "$1:$tag" >/dev/null 2>&1 || true; done
}

# --- docker -------------------------------------------------------------------------------
# bounded_runtime: prints the path of hack/kind/runc-bounded's cached copy when this host's
# capability bounding set lacks one that privileged containers (kind's nodes) are given.
bounded_runtime() {
  local last bounding
  last=$(cat /proc/sys/kernel/cap_last_cap)
  bounding=$((16#$(awk '/^CapBnd:/ { print $2 }' /proc/self/status)))
  [ $(( bounding & ((1 << (last + 1)) - 1) )) -ne $(( (1 << (last + 1)) - 1 )) ] || return 0
  install -m 0755 hack/kind/runc-bounded "$GO_BIN/runc-bounded"
  echo "$GO_BIN/runc-bounded"
}

# apt_install <package...>: Debian packages, as root only.
apt_install() {
  [ "$(id -u)" = 0 ] || die "$* missing and this is not root: apt-get install $*"
  say "installing $* (Debian packages)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2 ||
    { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2; } ||
    die "apt-get install $* failed (see above)."
}

docker_up() {
  if ! command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "Docker is not installed and this is not root: install Docker (Debian: apt-get install docker.io) and run again."
    apt_install docker.io
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
# One module and build cache with hack/kube-bins.sh: the node's Kubernetes binaries reuse
# what building kube-apiserver compiled.
go_env

# go_install <dir> <label> <cgo> <tags> <ldflags> <package@version...>: binaries into <dir>
# (named after its component and version), unless the first one is there already.
go_install() {
  local dir=$1 label=$2 cgo=$3 tags=$4 ldflags=$5
  shift 5
  local first=${1%@*}
  [ -x "$dir/${first##*/}" ] && return 0
  command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 and run again."
  mkdir -p "$dir.partial"
  say "building $label ($*)"
  timed "go build $label" env GOBIN="$dir.partial" CGO_ENABLED="$cgo" nice -n 15 \
    go install -trimpath -tags "$tags" -ldflags "-s -w $ldflags" "$@" ||
    die "go install $* failed (see above)."
  rm -rf "$dir"
  mv "$dir.partial" "$dir"
}

CONTAINERD_BIN="$GO_BIN/containerd-$CONTAINERD_VERSION"
RUNC_BIN="$GO_BIN/runc-$RUNC_VERSION"
CNI_BIN="$GO_BIN/cni-plugins-$CNI_PLUGINS_VERSION"
CRICTL_BIN="$GO_BIN/crictl-$CRICTL_VERSION"
COREDNS_BIN="$GO_BIN/coredns-$COREDNS_VERSION"
# svcplane's own small programs (the sandbox's pause, the e2e test server), by their sources.
PROGRAMS_BIN="$GO_BIN/programs-$(key "" hack/kind/images/go.mod hack/kind/images/*/*.go)"

step_go() {
  go_install "$(dirname "$KIND_BIN")" "kind $KIND_VERSION" 0 "" "" "sigs.k8s.io/kind@$KIND_VERSION"
  if [ ! -x "$PROGRAMS_BIN/test-server" ]; then
    say "building pause and test-server (hack/kind/images)"
    mkdir -p "$PROGRAMS_BIN"
    (cd hack/kind/images && CGO_ENABLED=0 timed "go build pause, test-server" nice -n 15 \
      go build -trimpath -ldflags "-s -w" -o "$PROGRAMS_BIN/" ./pause ./test-server) ||
      die "go build of hack/kind/images failed (see above)."
  fi
  local cd=github.com/containerd/containerd/v2/cmd
  go_install "$CONTAINERD_BIN" "containerd $CONTAINERD_VERSION" 0 "no_aufs no_zfs no_btrfs no_devmapper" "" \
    "$cd/containerd@$CONTAINERD_VERSION" "$cd/ctr@$CONTAINERD_VERSION" \
    "$cd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  # runc needs cgo (its nsenter) and libseccomp; linked statically, as runc's `make static`.
  if [ ! -x "$RUNC_BIN/runc" ]; then
    [ -f /usr/include/seccomp.h ] || apt_install libseccomp-dev
    command -v gcc >/dev/null || apt_install gcc libc6-dev
  fi
  go_install "$RUNC_BIN" "runc $RUNC_VERSION" 1 "seccomp netgo osusergo urfave_cli_no_docs" "-extldflags -static" \
    "github.com/opencontainers/runc@$RUNC_VERSION"
  local cni=github.com/containernetworking/plugins/plugins
  go_install "$CNI_BIN" "CNI plugins $CNI_PLUGINS_VERSION" 0 "" "" \
    "$cni/main/bridge@$CNI_PLUGINS_VERSION" "$cni/ipam/host-local@$CNI_PLUGINS_VERSION" \
    "$cni/main/loopback@$CNI_PLUGINS_VERSION" "$cni/meta/portmap@$CNI_PLUGINS_VERSION"
  go_install "$CRICTL_BIN" "crictl $CRICTL_VERSION" 0 "" "" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
  go_install "$COREDNS_BIN" "CoreDNS $COREDNS_VERSION" 0 "" "" "github.com/coredns/coredns@$COREDNS_VERSION"
  # A second kube-bins.sh would build the same binaries again, side by side.
  while pgrep -f 'kube-bins[.]sh' >/dev/null; do
    say "another hack/kube-bins.sh is running; waiting for it to finish"
    sleep 30
  done
  local start=$SECONDS
  KUBE_DIR=$(KUBE_VERSION=$KUBE_VERSION ETCD_VERSION=$ETCD_VERSION \
    hack/kube-bins.sh kubelet kubeadm kube-proxy kube-scheduler | tail -n1)
  [ $((SECONDS - start)) -lt 5 ] || printf '%s %s %ss\n' "$(date -u +%FT%TZ)" "kube-bins (node binaries, etcd $ETCD_VERSION)" "$((SECONDS - start))" >>"$TIMES"
  export KUBE_DIR
}

# --- base ---------------------------------------------------------------------------------
# The node's userspace: what kubelet, kube-proxy, containerd and kind's entrypoint call
# (systemd, iptables/nftables, conntrack, mount tools), from Debian packages. runc and the
# CNI plugins are built above, at kind's versions.
BASE_PACKAGES=systemd,dbus,conntrack,iptables,nftables,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,e2fsprogs,iputils-ping,netcat-openbsd,dnsutils
# The hooks' "$1" is mmdebstrap's root directory, expanded by mmdebstrap.
# shellcheck disable=SC2016
BASE_HOOKS=(
  --customize-hook='rm -f "$1"/etc/systemd/system/*.wants/* "$1"/lib/systemd/system/multi-user.target.wants/* "$1"/lib/systemd/system/local-fs.target.wants/* "$1"/lib/systemd/system/basic.target.wants/*'
  --customize-hook='rm -f "$1"/lib/systemd/system/sockets.target.wants/*udev* "$1"/lib/systemd/system/sockets.target.wants/*initctl* "$1"/lib/systemd/system/sysinit.target.wants/systemd-tmpfiles-setup.service'
  --customize-hook='echo ReadKMsg=no >>"$1"/etc/systemd/journald.conf; ln -sf /usr/lib/systemd/systemd "$1"/sbin/init; mkdir -p "$1"/etc/kubernetes/manifests "$1"/opt/cni/bin'
  --customize-hook='rm -rf "$1"/var/cache/apt/* "$1"/var/lib/apt/lists/* "$1"/usr/share/doc "$1"/usr/share/man'
)
BASE_KEY=$(key "$DEBIAN_SUITE $BASE_PACKAGES ${BASE_HOOKS[*]}")
BASE_IMAGE="svcplane-kind-base:$DEBIAN_SUITE-$BASE_KEY"
ROOTFS="$KIND_CACHE/rootfs-$DEBIAN_SUITE-$BASE_KEY.tar"

# build_rootfs: the Debian root filesystem, minus the services a node container must not
# start, with journald not reading the host's kmsg. Kept: a new Docker engine imports it again.
build_rootfs() {
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  say "building the $DEBIAN_SUITE root filesystem with mmdebstrap (Debian packages)"
  timed "rootfs ($DEBIAN_SUITE, mmdebstrap)" nice -n 15 mmdebstrap --variant=minbase \
    --include="$BASE_PACKAGES" "${BASE_HOOKS[@]}" \
    "$DEBIAN_SUITE" "$ROOTFS.partial.tar" >&2 || die "mmdebstrap failed (see above)."
  mv "$ROOTFS.partial.tar" "$ROOTFS"
}

step_base() {
  docker_up
  if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
    say "base image $BASE_IMAGE is there"
    return
  fi
  [ -f "$ROOTFS" ] || build_rootfs
  # STOPSIGNAL is set by hack/kind/node.Dockerfile: docker import cannot.
  timed "docker import $BASE_IMAGE" docker import \
    --change 'ENV container=docker' \
    --change 'ENTRYPOINT ["/usr/local/bin/entrypoint", "/sbin/init"]' \
    "$ROOTFS" "$BASE_IMAGE" >/dev/null
  prune svcplane-kind-base 2
  say "base image $BASE_IMAGE: $(docker image inspect -f '{{.Size}}' "$BASE_IMAGE" | numfmt --to=iec)"
}

# --- images -------------------------------------------------------------------------------
# The images kubeadm and the node's containerd ask for, under the names they ask for, each
# saved once per version.
R=registry.k8s.io
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

# component_images: the tarballs the node image preloads, one per line.
component_images() {
  local c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do echo "$IMAGE_DIR/$c-$KUBE_VERSION.tar"; done
  echo "$IMAGE_DIR/kube-proxy-$KUBE_VERSION-$BASE_KEY.tar"
  echo "$IMAGE_DIR/etcd-$ETCD_TAG.tar"
  echo "$IMAGE_DIR/coredns-$COREDNS_VERSION.tar"
  echo "$IMAGE_DIR/pause-${PROGRAMS_BIN##*-}.tar"
}

step_images() {
  docker_up
  [ -n "${KUBE_DIR:-}" ] || step_go
  local k=$KUBE_DIR start=$SECONDS
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    scratch_image "$IMAGE_DIR/$c-$KUBE_VERSION.tar" "$k/$c" "/usr/local/bin/$c" "$R/$c:$KUBE_VERSION"
  done
  scratch_image "$IMAGE_DIR/etcd-$ETCD_TAG.tar" "$k/etcd" /usr/local/bin/etcd "$R/etcd:$ETCD_TAG"
  scratch_image "$IMAGE_DIR/coredns-$COREDNS_VERSION.tar" "$COREDNS_BIN/coredns" /coredns \
    "$R/coredns/coredns:$COREDNS_VERSION"
  local pause_tags=()
  for t in "${PAUSE_TAGS[@]}"; do pause_tags+=("$R/pause:$t"); done
  scratch_image "$IMAGE_DIR/pause-${PROGRAMS_BIN##*-}.tar" "$PROGRAMS_BIN/pause" /pause "${pause_tags[@]}"
  # kube-proxy calls iptables, nft and conntrack: it runs on the node's own userspace.
  local proxy_tar="$IMAGE_DIR/kube-proxy-$KUBE_VERSION-$BASE_KEY.tar"
  if [ ! -f "$proxy_tar" ]; then
    docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || step_base
    local ctx
    ctx=$(mktemp -d)
    cp "$k/kube-proxy" "$ctx/"
    printf 'FROM %s\nCOPY kube-proxy /usr/local/bin/kube-proxy\nENTRYPOINT ["/usr/local/bin/kube-proxy"]\n' "$BASE_IMAGE" >"$ctx/Dockerfile"
    docker build -q -t "$R/kube-proxy:$KUBE_VERSION" "$ctx" >/dev/null || die "docker build of kube-proxy failed"
    rm -rf "$ctx"
    docker save -o "$proxy_tar.tmp" "$R/kube-proxy:$KUBE_VERSION"
    mv "$proxy_tar.tmp" "$proxy_tar"
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
NODE_INPUTS=(hack/kind/node.Dockerfile hack/kind/default-storage.yaml hack/kind/runc-bounded hack/kind/containerd-oom.conf)
NODE_IMAGE="svcplane-kind-node:$KUBE_VERSION-$(key "$KIND_VERSION $CONTAINERD_VERSION $RUNC_VERSION $CNI_PLUGINS_VERSION $CRICTL_VERSION $COREDNS_VERSION $ETCD_VERSION $BASE_KEY ${PROGRAMS_BIN##*-}" "${NODE_INPUTS[@]}")"

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
  mkdir "$ctx/bin" "$ctx/cni"
  cp "$CONTAINERD_BIN"/{containerd,ctr,containerd-shim-runc-v2} "$CRICTL_BIN/crictl" "$RUNC_BIN/runc" \
    "$KUBE_DIR"/{kubelet,kubeadm,kubectl} "$ctx/bin/"
  cp "$CNI_BIN"/* "$ctx/cni/"
  cp "${NODE_INPUTS[@]}" "$ctx/"
  mv "$ctx/node.Dockerfile" "$ctx/Dockerfile"
  say "building the node's file system (docker build)"
  docker build -q --build-arg BASE_IMAGE="$BASE_IMAGE" --build-arg KUBE_VERSION="$KUBE_VERSION" \
    -t "$NODE_IMAGE-unloaded" "$ctx" >/dev/null || die "docker build of the node image failed"
  rm -rf "$ctx"

  local images
  mapfile -t images < <(component_images)
  say "preloading ${#images[@]} images into the node's containerd"
  local builder
  builder=$(docker run -d --entrypoint=sleep --security-opt seccomp=unconfined "$NODE_IMAGE-unloaded" infinity)
  # shellcheck disable=SC2064
  trap "docker rm -f $builder >/dev/null 2>&1" EXIT
  docker exec "$builder" bash -c 'nohup containerd >/tmp/containerd.log 2>&1 &'
  for _ in $(seq 30); do docker exec "$builder" ctr version >/dev/null 2>&1 && break; sleep 1; done
  for tar in "${images[@]}"; do
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
  prune svcplane-kind-node 2
  say "node image $NODE_IMAGE: $(docker image inspect -f '{{.Size}}' "$NODE_IMAGE" | numfmt --to=iec)"
}

# --- svcplane -------------------------------------------------------------------------------
# Tagged by content: runs from other checkouts on this machine do not load each other's images.
TEST_SERVER_IMAGE="svcplane-test-server:e2e-${PROGRAMS_BIN##*-}"
TARGET_DIR=$CARGO_TARGET_DIR
[[ $TARGET_DIR == /* ]] || TARGET_DIR="$PWD/$TARGET_DIR"
SVCPLANE_BIN="$TARGET_DIR/debug/svcplane"

step_svcplane() {
  docker_up
  [ -x "$PROGRAMS_BIN/test-server" ] || step_go
  local ctx
  if ! docker image inspect "$TEST_SERVER_IMAGE" >/dev/null 2>&1; then
    ctx=$(mktemp -d)
    cp "$PROGRAMS_BIN/test-server" "$ctx/"
    printf 'FROM scratch\nCOPY test-server /test-server\nUSER 65532:65532\nENTRYPOINT ["/test-server"]\nCMD ["serve"]\n' >"$ctx/Dockerfile"
    docker build -q -t "$TEST_SERVER_IMAGE" "$ctx" >/dev/null || die "docker build of $TEST_SERVER_IMAGE failed"
    rm -rf "$ctx"
  fi

  # The profile and features of hack/test.sh's build of the e2e suite (e2e in the selection
  # unifies its dependencies' features alike): with it done, cargo only links the binary.
  command -v cargo >/dev/null || die "cargo is not installed; install Rust (rustup) and run again."
  say "building svcplane (cargo build, debug profile)"
  timed "cargo build svcplane (debug)" nice -n 15 \
    cargo build --locked -p e2e -p svcplane --bin svcplane >&2 ||
    die "cargo build of svcplane failed (see above)."
  # The binary without its debug information and the shared libraries it was linked against
  # (glibc's, from this machine), on an empty base.
  ctx=$(mktemp -d)
  mkdir -p "$ctx/rootfs/usr/local/bin"
  strip -o "$ctx/rootfs/usr/local/bin/svcplane" "$SVCPLANE_BIN"
  local lib
  for lib in $(ldd "$SVCPLANE_BIN" | grep -o '/[^ ]*'); do
    cp -L --parents "$lib" "$ctx/rootfs/"
  done
  SVCPLANE_IMAGE="svcplane:e2e-$(cd "$ctx" && find rootfs -type f | sort | xargs sha256sum | sha256sum | cut -c1-12)"
  if ! docker image inspect "$SVCPLANE_IMAGE" >/dev/null 2>&1; then
    docker build -q -f hack/kind/svcplane.Dockerfile -t "$SVCPLANE_IMAGE" "$ctx" >/dev/null ||
      die "docker build of $SVCPLANE_IMAGE failed"
  fi
  rm -rf "$ctx"
  prune svcplane 5
  say "images $SVCPLANE_IMAGE: $(docker image inspect -f '{{.Size}}' "$SVCPLANE_IMAGE" | numfmt --to=iec), $TEST_SERVER_IMAGE: $(docker image inspect -f '{{.Size}}' "$TEST_SERVER_IMAGE" | numfmt --to=iec)"
}

steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(docker go base images node svcplane)
for s in "${steps[@]}"; do
  declare -F "step_$s" >/dev/null || die "unknown step $s"
  "step_$s"
done
printf 'NODE_IMAGE=%s\nKIND=%s\nKUBE_DIR=%s\nSVCPLANE_BIN=%s\nSVCPLANE_IMAGE=%s\nTEST_SERVER_IMAGE=%s\n' \
  "$NODE_IMAGE" "$KIND_BIN" "${KUBE_DIR:-}" "$SVCPLANE_BIN" "${SVCPLANE_IMAGE:-}" "$TEST_SERVER_IMAGE"
