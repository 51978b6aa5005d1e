#!/usr/bin/env bash
# svcplane's one test command: builds what is missing (the Kubernetes binaries, cached by
# version), then runs formatting and lint checks, the unit and in-process tests, the e2e
# suite against a real etcd + kube-apiserver (or the cluster KUBECONFIG names), and, where
# Docker can run, svcplane in kind clusters built here (hack/kind-e2e.sh: a live takeover
# from the in-tree controllers, then the sidecar mode).
#
# Environment:
#   SVCPLANE_CACHE    cache of built binaries and images (default: $HOME/.cache/svcplane)
#   CARGO_TARGET_DIR  cargo's build directory (default: $SVCPLANE_CACHE/target)
#   KUBECONFIG        run the e2e suite against this cluster instead of a local one (the kind
#                     stage is skipped then)
#   SVCPLANE_SKIP_KIND=1  skip the kind stage
#   SVCPLANE_KIND_LATEST_START  in CI, the kind stage is skipped (and says so) when the run
#                     has taken longer than this many seconds before it (default 3900)
#   SVCPLANE_KIND_RUN_SECONDS  bound on each kind run (default 600; a run takes about 120 s):
#                     one that hangs is stopped, prints its diagnostics and fails the stage
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" test
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

started=$SECONDS

step "Rust components"
for component in rustfmt clippy; do
  if ! rustup component list --installed 2>/dev/null | grep -q "^$component"; then
    rustup component add "$component"
  fi
done

step "Kubernetes binaries (hack/kube-bins.sh)"
kube_bins

step "kind stage: Docker, and its images built in the background (hack/kind-images.sh)"
# kind_blocker: why the kind stage cannot run here, or nothing (and Docker is up: as root,
# hack/kind-images.sh installs and starts it).
kind_blocker() {
  if [ -n "${SVCPLANE_SKIP_KIND:-}" ]; then
    echo "SVCPLANE_SKIP_KIND is set"
  elif [ -n "${KUBECONFIG:-}" ]; then
    echo "KUBECONFIG is set: the e2e suite runs against that cluster"
  elif ! docker_log=$(bash hack/kind-images.sh docker 2>&1 >/dev/null); then
    echo "Docker cannot run here: $(tail -n 1 <<<"$docker_log")"
  fi
}
kind_blocker=$(kind_blocker)
kind_images=""
if [ -n "$kind_blocker" ]; then
  echo "the kind stage will be skipped: $kind_blocker" >&2
else
  # Cargo's builds leave a core idle much of the time; the image builds (Go, mmdebstrap) take
  # it at a lower priority, and are waited for before the e2e suites, which measure time.
  # (After hack/kube-bins.sh: the node's binaries are built in the same Go module.)
  kind_log=$(mktemp "${TMPDIR:-/tmp}/svcplane-kind-images.XXXXXX")
  setsid nice -n 10 bash hack/kind-images.sh go base images node >"$kind_log" 2>&1 &
  kind_images=$!
  trap '[ -z "$kind_images" ] || kill -- -"$kind_images" 2>/dev/null; rm -f "$kind_log"' EXIT
  echo "building in the background (log: $kind_log)" >&2
fi

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "unit and in-process tests"
cargo test --workspace --exclude e2e --locked

if [ -n "$kind_images" ]; then
  step "kind images (hack/kind-images.sh, in the background since the start)"
  if ! wait "$kind_images"; then
    kind_images=""
    cat "$kind_log" >&2
    echo "hack/kind-images.sh failed (its output above)" >&2
    exit 1
  fi
  kind_images=""
  grep '^\[kind' "$kind_log" >&2
  echo "done after $((SECONDS - started))s" >&2
fi

step "e2e suite"
cargo build -p e2e --tests --locked
tmp=${TMPDIR:-/tmp}
pids_before=$(pgrep -f "^$SVCPLANE_KUBE_BIN_DIR/" | sort || true)
dirs_before=$(ls -d "$tmp"/svcplane-control-plane-* 2>/dev/null | sort || true)
cargo test -p e2e --locked

step "nothing left behind by the e2e suite"
sleep 1
left_pids=$(comm -13 <(echo "$pids_before") <(pgrep -f "^$SVCPLANE_KUBE_BIN_DIR/" | sort || true))
left_dirs=$(comm -13 <(echo "$dirs_before") <(ls -d "$tmp"/svcplane-control-plane-* 2>/dev/null | sort || true))
if [ -n "$left_pids$left_dirs" ]; then
  echo "the e2e suite left processes or directories behind:" >&2
  [ -z "$left_pids" ] || ps -o pid,args -p $left_pids >&2 || true
  [ -z "$left_dirs" ] || echo "$left_dirs" >&2
  exit 1
fi

step "kind: svcplane in real clusters (hack/kind-e2e.sh)"
# In CI (90 minutes at most), a run that built everything from an empty cache may not have
# the time left for two kind clusters: it says so instead of running over.
if [ -z "$kind_blocker" ] && [ -n "${CI:-}" ] && [ $((SECONDS - started)) -gt "${SVCPLANE_KIND_LATEST_START:-3900}" ]; then
  kind_blocker="the run has taken $((SECONDS - started))s; the kind stage starts only before ${SVCPLANE_KIND_LATEST_START:-3900}s in CI"
fi
if [ -n "$kind_blocker" ]; then
  echo "SKIPPED the kind stage: $kind_blocker" >&2
else
  kind_started=$SECONDS
  # A name of this run's own: other checkouts on this machine may run kind clusters too.
  # Each run takes about two minutes; one that hangs ends at the bound with its diagnostics
  # (cluster state, svcplane's and kube-apiserver's logs) instead of holding the run, so
  # that even a kind stage started at SVCPLANE_KIND_LATEST_START ends within CI's time.
  kind_bound=${SVCPLANE_KIND_RUN_SECONDS:-600}
  KIND_CLUSTER="svcplane-test-$$" KIND_TAKEOVER=1 timeout "$kind_bound" bash hack/kind-e2e.sh
  KIND_CLUSTER="svcplane-test-$$" KIND_TAKEOVER=1 KIND_SIDECAR=1 timeout "$kind_bound" bash hack/kind-e2e.sh
  echo "kind stage: $((SECONDS - kind_started))s (and the image builds above)" >&2
fi

step "all tests passed in $((SECONDS - started))s"
