#!/usr/bin/env bash
# Builds the Kubernetes control-plane binaries svcplane is tested against (etcd,
# kube-apiserver, kube-controller-manager, kubectl) from Go modules, into a cache
# directory keyed by version. Returns at once when they are already built.
# Arguments name more binaries of k8s.io/kubernetes/cmd to build into the same directory
# (hack/kind-images.sh asks for kubelet, kubeadm, kube-proxy and kube-scheduler).
#
# With SVCPLANE_LOAD_TOOLS=1 it also builds what the controllers benchmark's `load` scenario
# runs: kube-scheduler (as above) and KWOK (sigs.k8s.io/kwok/cmd/kwok at KWOK_VERSION, into
# $SVCPLANE_CACHE/bin/kwok-$KWOK_VERSION with its release's fast stages as stages.yaml,
# linked as `kwok` and `kwok-stages.yaml` from the directory printed). Off by default: the
# test suite and CI need neither.
#
# Prints the directory holding the binaries on its last line of stdout; progress
# goes to stderr.
#
# Environment:
#   SVCPLANE_CACHE   cache root (default: $HOME/.cache/svcplane)
#   KUBE_VERSION     Kubernetes release (default: pinned below)
#   ETCD_VERSION     etcd release (default: pinned below)
#   SVCPLANE_LOAD_TOOLS  1: also kube-scheduler and KWOK (default: 0)
#   KWOK_VERSION     KWOK release (default: pinned below)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" kube-bins

# v1.37.2: the newest v1.37 patch the Go module proxy serves that Go 1.26 builds.
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
# v0.8.0: the newest v0.8 release the Go module proxy serves.
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
BIN_DIR="$SVCPLANE_CACHE/bin/kube-$KUBE_VERSION-etcd-$ETCD_VERSION"
KWOK_DIR="$SVCPLANE_CACHE/bin/kwok-$KWOK_VERSION"
KUBE_BINS=(kube-apiserver kube-controller-manager kubectl "$@")
LOAD_TOOLS=${SVCPLANE_LOAD_TOOLS:-0}
[ "$LOAD_TOOLS" = 1 ] && KUBE_BINS+=(kube-scheduler)

all_present() {
  for b in etcd "${KUBE_BINS[@]}"; do [ -x "$BIN_DIR/$b" ] || return 1; done
  [ "$LOAD_TOOLS" != 1 ] || { [ -x "$KWOK_DIR/kwok" ] && [ -s "$KWOK_DIR/stages.yaml" ]; }
}

# link_kwok: BIN_DIR/kwok and kwok-stages.yaml name this KWOK_VERSION's build (when the
# load tools are wanted).
link_kwok() {
  [ "$LOAD_TOOLS" = 1 ] || return 0
  ln -sfn "$KWOK_DIR/kwok" "$BIN_DIR/kwok"
  ln -sfn "$KWOK_DIR/stages.yaml" "$BIN_DIR/kwok-stages.yaml"
}

if all_present; then
  link_kwok
  echo "$BIN_DIR"
  exit 0
fi

command -v go >/dev/null || die "Go is not installed; install Go >= 1.26 (https://go.dev/dl) and run again."

go_env
export CGO_ENABLED=0
mkdir -p "$BIN_DIR" "$GOMODCACHE" "$GOCACHE"

# go_line_of <go.mod>: the version on its `go` line.
go_line_of() { awk '$1 == "go" { print $2; exit }' "$1"; }

# version_ge A B: true when A >= B (dotted numeric versions).
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# wrapper_module <dir> <module> <version> <module path prefix>: writes a go.mod in
# <dir> that requires <module>@<version> and turns each relative `replace` of the
# module's own go.mod (its in-repo sibling modules) into a versioned replace.
wrapper_module() {
  local dir=$1 module=$2 version=$3 sibling_version=$4
  mkdir -p "$dir"
  rm -f "$dir/go.mod"
  say "resolving $module@$version through the Go module proxy"
  local info gomod
  info=$(cd "$dir" && go mod download -json "$module@$version" || true)
  if grep -q '"Error"' <<<"$info"; then
    die "could not download $module@$version from the Go module proxy (GOPROXY=$(go env GOPROXY)): $(awk -F'"' '/"Error"/ { print $4 }' <<<"$info")"
  fi
  gomod=$(awk -F'"' '/"GoMod"/ { print $4 }' <<<"$info")

  local want have
  want=$(go_line_of "$gomod")
  have=$(go env GOVERSION); have=${have#go}
  version_ge "$have" "$want" || die "$module@$version needs Go $want, this machine has Go $have; install Go >= $want or pick an older release with KUBE_VERSION/ETCD_VERSION."

  {
    echo "module svcplane.local/build"
    echo
    echo "go $want"
    grep -E '^godebug ' "$gomod" || true
    echo
    echo "require $module $version"
    echo
    echo "replace ("
    # Lines like `k8s.io/api => ./staging/src/k8s.io/api` or `go.etcd.io/etcd/api/v3 => ../api`,
    # kept only for modules the release requires (etcd also points forbidden paths at ./).
    awk '/^(require|replace) \(/ { block = $1; next }
         block != "" && /^\)/ { block = "" ; next }
         block == "require" { required[$1] = 1 }
         /^require [^(]/ { required[$2] = 1 }
         block == "replace" && $3 ~ /^\./ { local[$1] = 1 }
         /^replace [^(]/ && $4 ~ /^\./ { local[$2] = 1 }
         END { for (m in local) if (m in required) print m }' "$gomod" | sort |
      while read -r sibling; do echo "	$sibling => $sibling $sibling_version"; done
    echo ")"
  } >"$dir/go.mod"
  say "wrapper module: $dir/go.mod ($(grep -c '=>' "$dir/go.mod") replaced sibling modules)"
}

# build <dir> <package> <output> [ldflags]
build() {
  local dir=$1 pkg=$2 out=$3 ldflags=${4:-}
  say "building $pkg (a cold build takes several minutes; Go prints nothing meanwhile)"
  local start=$SECONDS
  (
    cd "$dir"
    while sleep 60; do say "  still building $(basename "$out") ($((SECONDS - start))s)"; done &
    ticker=$!
    trap 'kill $ticker 2>/dev/null' EXIT
    go build -trimpath -tags selinux,notest -ldflags "-s -w $ldflags" -o "$out.tmp" "$pkg"
  ) || die "go build $pkg failed (see the output above)."
  mv "$out.tmp" "$out"
  say "built $(basename "$out") in $((SECONDS - start))s"
}

if [ ! -x "$BIN_DIR/etcd" ]; then
  dir="$SVCPLANE_CACHE/src/etcd-$ETCD_VERSION"
  wrapper_module "$dir" go.etcd.io/etcd/server/v3 "$ETCD_VERSION" "$ETCD_VERSION"
  build "$dir" go.etcd.io/etcd/server/v3 "$BIN_DIR/etcd"
fi

missing=()
for b in "${KUBE_BINS[@]}"; do [ -x "$BIN_DIR/$b" ] || missing+=("$b"); done
if [ ${#missing[@]} -gt 0 ]; then
  dir="$SVCPLANE_CACHE/src/kube-$KUBE_VERSION"
  # Staging modules are published as k8s.io/<m> v0.<minor>.<patch>.
  wrapper_module "$dir" k8s.io/kubernetes "$KUBE_VERSION" "v0.${KUBE_VERSION#v1.}"
  IFS=. read -r major minor _ <<<"${KUBE_VERSION#v}"
  stamp="-X k8s.io/component-base/version.gitVersion=$KUBE_VERSION"
  stamp+=" -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor"
  stamp+=" -X k8s.io/component-base/version.gitTreeState=clean"
  for b in "${missing[@]}"; do
    build "$dir" "k8s.io/kubernetes/cmd/$b" "$BIN_DIR/$b" "$stamp"
  done
fi

if [ "$LOAD_TOOLS" = 1 ] && [ ! -x "$KWOK_DIR/kwok" ]; then
  dir="$SVCPLANE_CACHE/src/kwok-$KWOK_VERSION"
  mkdir -p "$KWOK_DIR"
  # KWOK's go.mod replaces nothing: the wrapper only requires it.
  wrapper_module "$dir" sigs.k8s.io/kwok "$KWOK_VERSION" "$KWOK_VERSION"
  build "$dir" sigs.k8s.io/kwok/cmd/kwok "$KWOK_DIR/kwok"
fi
if [ "$LOAD_TOOLS" = 1 ] && [ ! -s "$KWOK_DIR/stages.yaml" ]; then
  # The kwok binary has no stages of its own (kwokctl writes them into its config): its
  # release's fast ones (nodes Ready at once, with a heartbeat; pods Running and Ready at
  # once, deleted at once), as a config file for `kwok --config`.
  src=$(cd "$SVCPLANE_CACHE/src/kwok-$KWOK_VERSION" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)/kustomize/stage
  for f in node/fast/node-initialize.yaml node/heartbeat/node-heartbeat.yaml \
    pod/fast/pod-ready.yaml pod/fast/pod-complete.yaml pod/fast/pod-delete.yaml; do
    echo "---"
    cat "$src/$f"
  done >"$KWOK_DIR/stages.yaml.tmp"
  mv "$KWOK_DIR/stages.yaml.tmp" "$KWOK_DIR/stages.yaml"
fi
link_kwok

say "ready in $BIN_DIR:"
say "  etcd $("$BIN_DIR/etcd" --version | awk '/etcd Version/ { print $3 }')"
say "  kube-apiserver $("$BIN_DIR/kube-apiserver" --version | awk '{ print $2 }')"
say "  kube-controller-manager $("$BIN_DIR/kube-controller-manager" --version | awk '{ print $2 }')"
say "  kubectl $("$BIN_DIR/kubectl" version --client 2>/dev/null | awk '/Client Version/ { print $3 }')"
[ "$LOAD_TOOLS" != 1 ] || say "  kwok $KWOK_VERSION ($KWOK_DIR/kwok)"
echo "$BIN_DIR"
