package devices_test

import (
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

var (
	entries1M     *devices.Entries
	entries1MOnce sync.Once
)

// registry1M is firesim registry's million devices, as the registry's
// store hands them to Build at start-up.
func registry1M(b *testing.B) *devices.Entries {
	entries1MOnce.Do(func() {
		e, err := sim.GenerateRegistry(sim.RegistryOptions{Devices: 1_000_000, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		entries1M = e
	})
	return entries1M
}

// cpuTime is the CPU time the process has used: on a shared machine the
// wall time of a benchmark says more about the neighbours than about it.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkBuildLedger1M builds the ledger of a million devices from
// entries (issue 18: what start-up does with the registry the store
// gives): the time, the CPU time (cpu-s/op, the collector's included), the
// bytes allocated, and MiB-held, what the ledger keeps (live heap after a
// collection, less the entries').
func BenchmarkBuildLedger1M(b *testing.B) {
	e := registry1M(b)
	var held float64
	var cpu time.Duration
	b.ReportAllocs()
	for b.Loop() {
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		cpu0 := cpuTime()
		l, err := devices.Build("registry", e)
		if err != nil {
			b.Fatal(err)
		}
		cpu += cpuTime() - cpu0
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(l)
		b.StartTimer()
	}
	b.ReportMetric(held, "MiB-held")
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
}

// BenchmarkApply1M is one device edited in a registry of a million: the
// copy-on-write snapshot an API change makes.
func BenchmarkApply1M(b *testing.B) {
	e := registry1M(b)
	l, err := devices.Build("registry", e)
	if err != nil {
		b.Fatal(err)
	}
	d := e.Devices[500_000]
	c := &devices.Change{UpsertDevices: []devices.DeviceEntry{d}}
	b.ReportAllocs()
	cpu0 := cpuTime()
	for i := 0; b.Loop(); i++ {
		c.UpsertDevices[0].Address = d.Address + string(rune('A'+i%26))
		if _, _, err := l.Apply(c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric((cpuTime()-cpu0).Seconds()/float64(b.N), "cpu-s/op")
}
