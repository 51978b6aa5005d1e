// Package gobench runs the in-tree kube-apiserver ClusterIP and NodePort allocators on the
// workloads of allocator/benches/allocator.rs, for hack/go-bench/compare.sh.
package gobench

import (
	"math/rand"
	"net"
	"testing"

	utilnet "k8s.io/apimachinery/pkg/util/net"
	api "k8s.io/kubernetes/pkg/apis/core"
	"k8s.io/kubernetes/pkg/registry/core/service/ipallocator"
	"k8s.io/kubernetes/pkg/registry/core/service/portallocator"
	netutils "k8s.io/utils/net"
)

const slash12 = "10.96.0.0/12"

// newSlash12 returns an in-tree /12 allocator with the given fraction of its addresses
// allocated: with AllocateNext, as a cluster fills it, or (uniform) at offsets drawn uniformly
// at random with a fixed seed, restored as one bitmap.
func newSlash12(b *testing.B, fill float64, uniform bool) (*ipallocator.Range, *net.IPNet) {
	b.Helper()
	_, cidr, err := netutils.ParseCIDRSloppy(slash12)
	if err != nil {
		b.Fatal(err)
	}
	r, err := ipallocator.NewInMemory(cidr)
	if err != nil {
		b.Fatal(err)
	}
	size := r.Free()
	count := int(float64(size) * fill)
	switch {
	case count == 0:
	case uniform:
		data := make([]byte, (size+7)/8)
		for _, offset := range rand.New(rand.NewSource(1)).Perm(size)[:count] {
			// big.Int bytes are big-endian: bit 0 is in the last byte.
			data[len(data)-1-offset/8] |= 1 << (offset % 8)
		}
		if err := r.Restore(cidr, data); err != nil {
			b.Fatal(err)
		}
	default:
		for i := 0; i < count; i++ {
			if _, err := r.AllocateNext(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if used := r.Used(); used != count {
		b.Fatalf("filled %d addresses, want %d", used, count)
	}
	return r, cidr
}

// BenchmarkAllocateNext: AllocateNext followed by the release of what it returned, so the
// fill stays constant. Filled with AllocateNext, free addresses end up clustered and the
// scan from a random start is longer than with a uniform fill (the _uniform variants).
func BenchmarkAllocateNext(b *testing.B) {
	for _, c := range []struct {
		name    string
		fill    float64
		uniform bool
	}{
		{"slash12_fill0", 0, false},
		{"slash12_fill50", 0.5, false},
		{"slash12_fill99", 0.99, false},
		{"slash12_fill50_uniform", 0.5, true},
		{"slash12_fill99_uniform", 0.99, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, _ := newSlash12(b, c.fill, c.uniform)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				ip, err := r.AllocateNext()
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Release(ip); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkAllocateReleaseSpecific: Allocate then Release of specific free addresses of a
// half-full /12.
func BenchmarkAllocateReleaseSpecific(b *testing.B) {
	b.Run("slash12_fill50", func(b *testing.B) {
		r, cidr := newSlash12(b, 0.5, false)
		var free []net.IP
		for index := 1; len(free) < 1024; index++ {
			ip, err := netutils.GetIndexedIP(cidr, index)
			if err != nil {
				b.Fatal(err)
			}
			if !r.Has(ip) {
				free = append(free, ip)
			}
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			ip := free[i%len(free)]
			if err := r.Allocate(ip); err != nil {
				b.Fatal(err)
			}
			if err := r.Release(ip); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkNodePortFill: 2768 AllocateNext on an empty default NodePort range.
func BenchmarkNodePortFill(b *testing.B) {
	b.Run("default_range", func(b *testing.B) {
		pr, err := utilnet.ParsePortRange("30000-32767")
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			pa, err := portallocator.NewInMemory(*pr)
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for j := 0; j < 2768; j++ {
				if _, err := pa.AllocateNext(); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
}

// BenchmarkSnapshot: the in-tree Snapshot (the RangeAllocation data written to etcd); its
// size is reported as snapshot_bytes.
func BenchmarkSnapshot(b *testing.B) {
	for _, c := range []struct {
		name string
		fill float64
	}{
		{"slash12_fill0.1", 0.001},
		{"slash12_fill1", 0.01},
		{"slash12_fill50", 0.5},
	} {
		b.Run(c.name, func(b *testing.B) {
			r, _ := newSlash12(b, c.fill, false)
			var dst api.RangeAllocation
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := r.Snapshot(&dst); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(len(dst.Data)), "snapshot_bytes")
		})
	}
}
