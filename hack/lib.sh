# shellcheck shell=bash
# The prelude of every hack/ script: `source "$(dirname "$0")/lib.sh" NAME`, NAME prefixing
# the script's messages. Turns on bash's strict mode, goes to the repository's root, and sets
#
#   SVCPLANE_CACHE    cache of built binaries, images and cargo's builds
#                     (default: $HOME/.cache/svcplane), exported
#   CARGO_TARGET_DIR  cargo's build directory (default: $SVCPLANE_CACHE/target), exported
#   CARGO_INCREMENTAL 0 in CI (exported): each run builds another commit, and the
#                     incremental sessions it would keep grow the cached build directory
#                     without bound (15 GB of a 33 GB cache here, which helped fill the disk)
#
# and defines
#
#   step TITLE        a stage's heading, `==> TITLE`, on stderr
#   say MESSAGE       `[NAME Ns] MESSAGE` on stderr, N the seconds since the script started
#   die MESSAGE       `[NAME] error: MESSAGE` on stderr, then exits 1
#   kube_bins [BIN...]  hack/kube-bins.sh (building what is missing; at once when built),
#                     its directory exported as SVCPLANE_KUBE_BIN_DIR
#   go_env            exports the Go settings and caches kube-bins.sh builds with
#                     (GOMODCACHE_OVERRIDE and GOCACHE_OVERRIDE replace the caches)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HACK_NAME=${1:?usage: source hack/lib.sh NAME}
export SVCPLANE_CACHE=${SVCPLANE_CACHE:-$HOME/.cache/svcplane}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SVCPLANE_CACHE/target}
if [ -n "${CI:-}" ]; then
  export CARGO_INCREMENTAL=${CARGO_INCREMENTAL:-0}
  [ "$CARGO_INCREMENTAL" != 0 ] || rm -rf "$CARGO_TARGET_DIR/debug/incremental"
fi

step() { printf '\n==> %s\n' "$*" >&2; }
say() { printf '[%s %4ss] %s\n' "$HACK_NAME" "$SECONDS" "$*" >&2; }
die() {
  printf '[%s] error: %s\n' "$HACK_NAME" "$*" >&2
  exit 1
}

# shellcheck disable=SC2120 # its arguments are optional
kube_bins() {
  SVCPLANE_KUBE_BIN_DIR=$(bash hack/kube-bins.sh "$@" | tail -n 1)
  export SVCPLANE_KUBE_BIN_DIR
}

go_env() {
  # GOFLAGS from the caller (e.g. -p=1 on a shared machine) are kept.
  export GOTOOLCHAIN=local GOFLAGS="-mod=mod${GOFLAGS:+ $GOFLAGS}"
  export GOMODCACHE=${GOMODCACHE_OVERRIDE:-$SVCPLANE_CACHE/go/mod}
  export GOCACHE=${GOCACHE_OVERRIDE:-$SVCPLANE_CACHE/go/build}
}
