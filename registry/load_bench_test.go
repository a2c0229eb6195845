package registry

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// benchEntries is a registry of n devices like a county's: electrical-fire
// monitors and smoke detectors spread over villages, one station per town.
func benchEntries(n int) *devices.Entries {
	e := &devices.Entries{Places: map[string]string{"450204": "柳州市柳南区"}}
	for t := 1; t <= 10; t++ {
		town := fmt.Sprintf("450204%03d", t)
		e.Stations = append(e.Stations, devices.StationEntry{ID: "st-" + town, Name: "微型消防站 " + town,
			Grids: []string{town}, Endpoint: "http://127.0.0.1:8090/dispatch/" + town, Lat: 24.3, Lon: 109.4})
	}
	e.Devices = make([]devices.DeviceEntry, n)
	for i := range e.Devices {
		kind := "smoke"
		if i%3 == 0 {
			kind = "electrical"
		}
		e.Devices[i] = devices.DeviceEntry{ID: fmt.Sprintf("dev-%07d", i), Kind: kind, Model: "JTY-GD-NB",
			Grid: fmt.Sprintf("450204%03d%03d", i%10+1, i%200+1), Address: "鹅山路" + strconv.Itoa(i) + "号",
			Lat: 24.3, Lon: 109.4, Unit: "鹅山村委会", Phone: "13800000000"}
	}
	return e
}

// seeded is a SQLite store holding e.
func seeded(b *testing.B, e *devices.Entries) *Store {
	b.Helper()
	s, err := Open(filepath.Join(b.TempDir(), "registry.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	ctx := context.Background()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		b.Fatal(err)
	}
	w, err := s.begin(ctx, tx, "bench", "bench")
	if err != nil {
		b.Fatal(err)
	}
	if err := w.insertAll(e); err != nil {
		b.Fatal(err)
	}
	if err := w.commit(); err != nil {
		b.Fatal(err)
	}
	return s
}

// BenchmarkRegistryLoad is the start-up read of the registry from SQLite
// and its Build: 100,000 devices, or FW_REGISTRY_DEVICES.
func BenchmarkRegistryLoad(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("FW_REGISTRY_DEVICES")); err == nil && v > 0 {
		n = v
	}
	s := seeded(b, benchEntries(n))
	ctx := context.Background()
	b.ReportAllocs()
	cpu0 := cpuTime()
	for b.Loop() {
		e, err := s.Load(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if os.Getenv("FW_REGISTRY_NOBUILD") == "" {
			if _, err := devices.Build("bench", e); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/device")
	// The machine is shared: CPU time says more than wall time.
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/device")
}

// BenchmarkRegistryCommitDevice is one device edited through Commit (the
// API's path): validation, the transaction with its audit record, the
// live adoption, over a registry of 10,000 devices.
func BenchmarkRegistryCommitDevice(b *testing.B) {
	e := benchEntries(10_000)
	s := seeded(b, e)
	l, err := devices.Build("bench", e)
	if err != nil {
		b.Fatal(err)
	}
	s.Attach(devices.NewLive(l))
	ctx := context.Background()
	d := e.Devices[42]
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		d.Phone = strconv.Itoa(13800000000 + i)
		if _, _, err := s.Commit(ctx, "bench", &devices.Change{UpsertDevices: []devices.DeviceEntry{d}}, CommitOptions{Source: "api"}); err != nil {
			b.Fatal(err)
		}
	}
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkRegistryCommitBulk is a spreadsheet import's commit: 100,000
// new devices (FW_REGISTRY_DEVICES) in one Commit, audited each, into a
// registry of 10 stations.
func BenchmarkRegistryCommitBulk(b *testing.B) {
	n := 100_000
	if v, err := strconv.Atoi(os.Getenv("FW_REGISTRY_DEVICES")); err == nil && v > 0 {
		n = v
	}
	all := benchEntries(n)
	ctx := context.Background()
	b.ReportAllocs()
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		base := *all
		base.Devices = nil
		s := seeded(b, &base)
		l, err := devices.Build("bench", &base)
		if err != nil {
			b.Fatal(err)
		}
		s.Attach(devices.NewLive(l))
		cpu0 := cpuTime()
		b.StartTimer()
		if _, _, err := s.Commit(ctx, "bench", &devices.Change{UpsertDevices: all.Devices}, CommitOptions{Source: "xlsx import"}); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		cpu += cpuTime() - cpu0
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/device")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N)/float64(n), "cpu-ns/device")
}
