package main

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
	"github.com/firewatch-iot/firewatch/ingest/influx"
	"github.com/firewatch-iot/firewatch/pipeline"
	"github.com/firewatch-iot/firewatch/rules"
)

var (
	scaleEntries     *devices.Entries
	scaleEntriesOnce sync.Once
)

type nopAlarms struct{}

func (nopAlarms) Submit(rules.Event)                                          {}
func (nopAlarms) Sync() error                                                 { return nil }
func (nopAlarms) CommandAck(context.Context, string, []byte) error            { return nil }
func (nopAlarms) StationStatus(context.Context, string, []byte, string) error { return nil }
func (nopAlarms) OpenAlarms(context.Context, rules.Severity, func(pipeline.OpenAlarm)) error {
	return nil
}

type nopLines struct{}

func (nopLines) Write([]byte) {}

// BenchmarkStartFromEntries1M is what start-up does per device with the
// registry of a million devices the store hands over (issue 18), without
// the store's read and without the YAML ledger: the ledger (devices.Build),
// the pipeline with the default rules (rule engine, decoder, line-protocol
// encoder, liveness, edge faults), the annotations' encoder, the embedded
// broker's credentials and the NB-IoT index. cpu-s/op is the CPU time of
// that (the collector's included; the wall time on a shared machine says
// more of the neighbours), MiB-held what it keeps (live heap after a
// collection, less the entries').
func BenchmarkStartFromEntries1M(b *testing.B) {
	scaleEntriesOnce.Do(func() {
		e, err := sim.GenerateRegistry(sim.RegistryOptions{Devices: 1_000_000, Seed: 1})
		if err != nil {
			b.Fatal(err)
		}
		scaleEntries = e
	})
	log := slog.New(slog.DiscardHandler)
	var cpu time.Duration
	var held float64
	for b.Loop() {
		var before, after runtime.MemStats
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&before)
		b.StartTimer()
		cpu0 := startCPU()
		l, err := devices.Build("registry", scaleEntries)
		if err != nil {
			b.Fatal(err)
		}
		p, err := pipeline.New(pipeline.Options{Ledger: l, Lines: nopLines{}, Alarms: nopAlarms{}, Logger: log,
			Liveness: defaults().Liveness, Ingest: defaults().Ingest})
		if err != nil {
			b.Fatal(err)
		}
		ann := influx.NewEncoder(l)
		bc, err := defaults().MQTT.Config(l, prometheus.NewRegistry(), log)
		if err != nil {
			b.Fatal(err)
		}
		nb, err := l.NBIoTIndex()
		if err != nil {
			b.Fatal(err)
		}
		cpu += startCPU() - cpu0
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&after)
		held = float64(after.HeapAlloc-before.HeapAlloc) / (1 << 20)
		runtime.KeepAlive(p)
		runtime.KeepAlive(ann)
		runtime.KeepAlive(bc)
		runtime.KeepAlive(nb)
		b.StartTimer()
	}
	b.ReportMetric(cpu.Seconds()/float64(b.N), "cpu-s/op")
	b.ReportMetric(held, "MiB-held")
}

func startCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
