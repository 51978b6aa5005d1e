#!/usr/bin/env bash
# What holding svcplane's admission port costs one replica (issue 14): CONNECTIONS idle or
# slow connections (half TCP only, half TLS with a request whose headers never end), then 8
# concurrent reviews of almost 3 MiB, against `svcplane webhook` on a fresh local control
# plane. Prints the replica's VmRSS/VmHWM after each step and whether an ordinary review is
# answered. A measurement, not a test. Loopback only.
#
# Environment:
#   CONNECTIONS        connections to open (default 10000)
#   PROFILE            cargo profile to build: release (default) or dev
#   CARGO_TARGET_DIR   where cargo builds (default: $SVCPLANE_CACHE/target, see hack/lib.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" bench-connections

CONNECTIONS=${CONNECTIONS:-10000}
PROFILE=${PROFILE:-release}
OUT=$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")

# The client holds every connection it opens; the replica holds at most its limit.
WANT=$((CONNECTIONS + 1024))
if [ "$(ulimit -n)" -lt "$WANT" ]; then
  ulimit -n "$WANT" 2>/dev/null || ulimit -n "$(ulimit -Hn)"
fi
echo "file descriptor limit: $(ulimit -n)"

kube_bins
cargo build --locked --profile "$PROFILE" -p svcplane --bin svcplane
cargo build --locked --profile "$PROFILE" -p e2e --bin bench-connections

# Copies, so that a build in the shared target directory during the run changes nothing.
BIN=$(mktemp -d)
trap 'rm -rf "$BIN"' EXIT
cp "$CARGO_TARGET_DIR/$OUT/svcplane" "$CARGO_TARGET_DIR/$OUT/bench-connections" "$BIN/"
CONNECTIONS=$CONNECTIONS "$BIN/bench-connections" "$BIN/svcplane"
