//go:build linux

package durable

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// BenchmarkLogAck measures the write-ahead log alone on this machine's
// disk: 50 connections, each writing one message (a line of 4 readings)
// and waiting for its ack as the embedded broker's hook does, paced to
// 1,250 and 5,000 messages/s (5,000 and 20,000 readings/s). Reported: ack
// latency p50 and p99 (Write to ack), fsyncs per 1,000 messages, and the
// CPU of the whole process per message (getrusage: the log, its fsyncs and
// the fake writer and pacing around it).
func BenchmarkLogAck(b *testing.B) {
	for _, msgs := range []int{1250, 5000} {
		for _, window := range []time.Duration{0, DefaultCommitWindow, 5 * time.Millisecond} {
			name := fmt.Sprintf("readings=%d/window=%v", 4*msgs, window)
			if window == 0 {
				name = fmt.Sprintf("readings=%d/off", 4*msgs)
			}
			b.Run(name, func(b *testing.B) { benchLogAck(b, msgs, window) })
		}
	}
}

// off acknowledges at once: the baseline of the harness (mode off).
type off struct{ w *fakeWriter }

func (o off) Write(lines []byte) { o.w.WriteSeq(lines) }
func (o off) Await(ack func())   { ack() }

func benchLogAck(b *testing.B, msgs int, window time.Duration) {
	w := newFakeWriter()
	var l interface {
		Write([]byte)
		Await(func())
	} = off{w}
	var log *Log
	if window > 0 {
		var err error
		log, err = OpenLog(b.TempDir(), window, w, Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			b.Fatal(err)
		}
		stop := runLogErr(log)
		defer stop()
		l = log
	}
	const conns = 50
	rec := []byte("electrical,county=450204,device=el-k-001,kind=electrical,town=450204002,village=450204002003 cable_temp_c=31.5,phase_current_a=12,residual_current_ma=24,voltage_v=221 1764601200000\n")
	lat := make([][]time.Duration, conns)
	period := time.Second * conns / time.Duration(msgs)
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	b.ResetTimer()
	var wg sync.WaitGroup
	for c := range conns {
		n := b.N / conns
		if c < b.N%conns {
			n++
		}
		wg.Go(func() {
			time.Sleep(period * time.Duration(c) / conns) // spread the connections over a period
			t := time.NewTicker(period)
			defer t.Stop()
			done := make(chan struct{}, 1)
			ack := func() { done <- struct{}{} }
			for range n {
				<-t.C
				start := time.Now()
				l.Write(rec)
				l.Await(ack)
				<-done
				lat[c] = append(lat[c], time.Since(start))
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	all := slices.Concat(lat...)
	slices.Sort(all)
	cpu := time.Duration(syscall.TimevalToNsec(ru1.Utime) + syscall.TimevalToNsec(ru1.Stime) -
		syscall.TimevalToNsec(ru0.Utime) - syscall.TimevalToNsec(ru0.Stime))
	b.ReportMetric(float64(all[len(all)/2].Microseconds())/1000, "ack-p50-ms")
	b.ReportMetric(float64(all[len(all)*99/100].Microseconds())/1000, "ack-p99-ms")
	if log != nil {
		b.ReportMetric(testutil.ToFloat64(log.m.commits)/float64(b.N)*1000, "fsyncs/1k-msgs")
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/msg")
}
