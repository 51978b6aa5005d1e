#!/usr/bin/env bash
# The cost of one controller sync for a 5,000-pod Service (the pure work), for the Endpoints
# and the EndpointSlice controller: after one pod changed (the change applied to the Service's
# index, then the plan against what is published) and from scratch ("-full": the index built
# from every pod, then the plan). Criterion's timing, then, when valgrind is installed, the
# instructions one sync executes (cachegrind; stable on a shared machine, where times are
# not), as (instructions for N+ITERATIONS syncs - for N=0) / ITERATIONS.
#
# Environment:
#   ITERATIONS         syncs counted under cachegrind (default 20)
#   CARGO_TARGET_DIR   where cargo builds (default: $SVCPLANE_CACHE/target, see hack/lib.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/lib.sh" bench-sync

ITERATIONS=${ITERATIONS:-20}
echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- controllers || echo ' (with local changes)')"
cargo bench -p controllers --bench sync -- --warm-up-time 1 --measurement-time 5

BENCH=$(cargo bench -p controllers --bench sync --no-run --message-format=json 2>/dev/null |
  python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m["target"]["name"] == "sync" and m.get("executable"):
        print(m["executable"])')
if ! command -v valgrind >/dev/null; then
  echo "valgrind not installed: instruction counts skipped"
  exit 0
fi
instructions() {
  SYNC=$1 SYNC_ITERATIONS=$2 valgrind --tool=cachegrind --cache-sim=no \
    --cachegrind-out-file=/dev/null "$BENCH" 2>&1 | awk '/I *refs/ { gsub(",", "", $NF); print $NF }'
}
for sync in endpoints endpoints-full endpointslices endpointslices-full; do
  setup=$(instructions "$sync" 0)
  total=$(instructions "$sync" "$ITERATIONS")
  echo "$sync: $(( (total - setup) / ITERATIONS )) instructions per sync (cachegrind, $ITERATIONS syncs)"
done
