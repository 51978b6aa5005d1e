#!/usr/bin/env bash
# Runs the allocator benchmarks of svcplane (criterion, allocator/benches) and of the in-tree
# kube-apiserver allocator (go test -bench, this folder) on the same workloads, and prints them
# side by side with the goals of issue 3.
#
# Usage: hack/go-bench/compare.sh
# Environment:
#   MEASUREMENT_TIME  seconds measured per workload on each side (default 3)
#   SVCPLANE_CACHE    cache root (default: $HOME/.cache/svcplane): Go caches, cargo's builds
#   CARGO_TARGET_DIR  where cargo builds (default: $SVCPLANE_CACHE/target, see hack/lib.sh)
# shellcheck source=hack/lib.sh
source "$(dirname "$0")/../lib.sh" compare

ROOT=$PWD
MEASUREMENT_TIME=${MEASUREMENT_TIME:-3}

command -v go >/dev/null || { say "Go is not installed; install Go >= 1.26 and run again."; exit 1; }
command -v python3 >/dev/null || { say "python3 is needed to print the table."; exit 1; }

OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

say "svcplane: cargo bench (criterion, ${MEASUREMENT_TIME}s per workload)"
run() { # run <log> <command...>: output to <log>, shown only when the command fails
  local log=$1
  shift
  "$@" >"$log" 2>&1 || { cat "$log" >&2; say "failed: $*"; exit 1; }
}
cd "$ROOT"
run "$OUT/rust.txt" cargo bench -p allocator --bench allocator -- \
  --warm-up-time 1 --measurement-time "$MEASUREMENT_TIME" --noplot
run "$OUT/memory.txt" cargo bench -p allocator --bench memory

say "in-tree: go test -bench (k8s.io/kubernetes v1.37.1, ${MEASUREMENT_TIME}s per workload)"
cd "$ROOT/hack/go-bench"
go_env
export CGO_ENABLED=0
run "$OUT/go.txt" go test -run '^$' -bench . -benchmem -benchtime "${MEASUREMENT_TIME}s"

echo "machine: $(nproc) cores, $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
echo "toolchains: $(rustc --version), $(go version | awk '{ print $3 }')"
python3 - "$OUT" "$CARGO_TARGET_DIR/criterion" <<'PY'
import json, os, re, sys

out, criterion = sys.argv[1], sys.argv[2]

def read(name):
    with open(os.path.join(out, name)) as f:
        return f.read()

go_prefix = {
    "AllocateNext": "allocate_next",
    "AllocateReleaseSpecific": "allocate_release_specific",
    "NodePortFill": "nodeport_fill",
    "Snapshot": "snapshot",
}
go_ns, go_bytes = {}, {}
for line in read("go.txt").splitlines():
    m = re.match(r"Benchmark(\w+)/(\S+?)(?:-\d+)?\s+\d+\s+([\d.]+) ns/op(.*)", line)
    if not m or m.group(1) not in go_prefix:
        continue
    workload = f"{go_prefix[m.group(1)]}/{m.group(2)}"
    go_ns[workload] = float(m.group(3))
    b = re.search(r"([\d.]+) snapshot_bytes", m.group(4))
    if b:
        go_bytes[workload] = int(float(b.group(1)))

def rust_ns(workload):
    path = os.path.join(criterion, workload, "new", "estimates.json")
    with open(path) as f:
        return json.load(f)["mean"]["point_estimate"]

rust_bytes, rust_heap = {}, {}
for line in read("rust.txt").splitlines() + read("memory.txt").splitlines():
    m = re.match(r"(snapshot_bytes|memory_bytes) (\S+) (\d+)$", line)
    if m:
        (rust_bytes if m.group(1) == "snapshot_bytes" else rust_heap)[m.group(2)] = int(m.group(3))

workloads = [
    "allocate_next/slash12_fill0",
    "allocate_next/slash12_fill50",
    "allocate_next/slash12_fill99",
    "allocate_next/slash12_fill50_uniform",
    "allocate_next/slash12_fill99_uniform",
    "allocate_next/slash64_1M_allocated",
    "allocate_release_specific/slash12_fill50",
    "nodeport_fill/default_range",
    "snapshot/slash12_fill0.1",
    "snapshot/slash12_fill1",
    "snapshot/slash12_fill50",
]
print()
print(f"{'workload (time per operation)':<42} {'svcplane':>12} {'in-tree':>12} {'speedup':>9}")
speedup = {}
for w in workloads:
    r = rust_ns(w)
    g = go_ns.get(w)
    if g is None:
        print(f"{w:<42} {r:>10.1f}ns {'n/a':>12} {'':>9}")
        continue
    speedup[w] = g / r
    print(f"{w:<42} {r:>10.1f}ns {g:>10.1f}ns {g / r:>8.1f}x")

print()
print(f"{'snapshot size of a /12':<42} {'svcplane':>12} {'in-tree':>12} {'ratio':>9}")
ratio = {}
for fill in ["slash12_fill0.1", "slash12_fill1", "slash12_fill50"]:
    r, g = rust_bytes[fill], go_bytes[f"snapshot/{fill}"]
    ratio[fill] = g / r
    print(f"{fill:<42} {r:>11}B {g:>11}B {'1/%.1f' % (g / r):>9}")

print()
print("heap held by svcplane's allocated-address set (counting allocator):")
for key, heap in rust_heap.items():
    print(f"  {key:<40} heap {heap:>9} B   snapshot {rust_bytes[key]:>9} B")
print("  (in-tree: a /12 bitmap is a 131072-byte big.Int once its top bits are set; IPv6 ranges")
print("   are capped at 65536 addresses, so a /64 cannot hold 1,000,000 allocations)")

print()
print("goals (issue 3):")
def goal(ok, text):
    print(f"  [{'met' if ok else 'NOT met'}] {text}")
for w in ["allocate_next/slash12_fill50", "allocate_next/slash12_fill99",
          "allocate_next/slash12_fill50_uniform", "allocate_next/slash12_fill99_uniform"]:
    goal(speedup[w] >= 5, f"{w}: at least 5x in-tree ({speedup[w]:.1f}x)")
slower = [w for w, s in speedup.items() if s < 1]
goal(not slower, "no workload slower than in-tree" + (f" (slower: {', '.join(slower)})" if slower else ""))
goal(ratio["slash12_fill1"] >= 5, f"snapshot at 1% fill at most 1/5 of in-tree (1/{ratio['slash12_fill1']:.1f})")
goal(ratio["slash12_fill0.1"] >= 40, f"snapshot at 0.1% fill at most 1/40 of in-tree (1/{ratio['slash12_fill0.1']:.1f})")
heap = rust_heap["slash64_1M_allocated"]
goal(heap < 64 << 20, f"/64 with 1,000,000 allocations under 64 MiB ({heap / (1 << 20):.2f} MiB heap)")
PY
