package pipeline

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/durable"
)

// walWriter is the InfluxDB writer's side of a write-ahead log for the
// benchmark: one batch, never reported written (the log only grows).
type walWriter struct{ never chan struct{} }

func (w walWriter) WriteSeq([]byte) uint64             { return 1 }
func (w walWriter) Mark() uint64                       { return 1 }
func (w walWriter) Durable() (uint64, <-chan struct{}) { return 0, w.never }

// BenchmarkCheckpoint is the restart checkpoint (state.file) of a
// 10,000-device fleet written while messages flow at 5,000 messages/s
// through Take into a real write-ahead log (mode wal, 2 ms commit window,
// fsynced in the test's temporary directory) or with no durability (mode
// off). ns/op is the wall time of one checkpoint (snapshot, file, fsync,
// rename; since issue 15 also the wait for the snapshot's messages to be
// durable, overlapped with the file); take-p99-µs and take-max-µs are the
// time Take (the hot path, the ack not awaited) took for the messages
// handled during the checkpoints, which the snapshot holds up.
func BenchmarkCheckpoint(b *testing.B) {
	for _, mode := range []string{"off", "wal"} {
		b.Run("durability="+mode, func(b *testing.B) { benchCheckpoint(b, 10_000, mode == "wal") })
	}
}

func benchCheckpoint(b *testing.B, n int, wal bool) {
	var y strings.Builder
	y.WriteString("places:\n  \"450204\": 柳南区\n  \"450204002\": 潭西街道\n  \"450204002003\": 鹅山村\n" +
		"stations:\n  - {id: st-1, name: 潭西街道微型消防站, grids: [\"450204002\"], endpoint: \"http://127.0.0.1:1/x\"}\ndevices:\n")
	for i := range n {
		fmt.Fprintf(&y, "  - {id: dev-450204-%05d, kind: electrical, model: M, grid: \"450204002003\"}\n", i)
	}
	l, err := devices.ParseLedger("bench", []byte(y.String()))
	if err != nil {
		b.Fatal(err)
	}
	quiet := slog.New(slog.DiscardHandler)
	opts := Options{Ledger: l, Lines: discardLines{}, Alarms: &lockedAlarms{}, Ingest: DefaultIngest(),
		Liveness: DefaultLiveness(), StateFile: filepath.Join(b.TempDir(), "firewatch.state"), StateInterval: time.Hour, Logger: quiet}
	ctx, cancel := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer bg.Wait()
	defer cancel()
	if wal {
		log, err := durable.OpenLog(b.TempDir(), durable.DefaultCommitWindow, walWriter{make(chan struct{})}, durable.Options{Logger: quiet})
		if err != nil {
			b.Fatal(err)
		}
		bg.Go(func() { log.Run(ctx) })
		opts.Lines, opts.Durability = log, log
	}
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now().UnixMilli()
	msg := func(i, seq int) (string, []byte) {
		return "fw/v1/up/" + l.Devices[i].ID + "/telemetry",
			fmt.Appendf(nil, `{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d,"cable_temp_c":31.5}}`, now+int64(seq), seq, 20+seq%30)
	}
	for i := range l.Devices { // every device's rule state begun
		topic, payload := msg(i, 1)
		p.Take(Message{Topic: topic, Payload: payload, Ack: func() {}})
	}
	// The stream: 5 messages every ms, each Take timed while a checkpoint
	// runs (measuring is on while the benchmark loop runs).
	var mu sync.Mutex
	var measuring bool
	var takes []time.Duration
	bg.Go(func() {
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		k := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			for range 5 {
				k++
				topic, payload := msg(k%n, 2+k/n)
				start := time.Now()
				p.Take(Message{Topic: topic, Payload: payload, Ack: func() {}})
				d := time.Since(start)
				mu.Lock()
				if measuring {
					takes = append(takes, d)
				}
				mu.Unlock()
			}
		}
	})
	mu.Lock()
	measuring = true
	mu.Unlock()
	for b.Loop() {
		if err := p.ckpt.write(); err != nil {
			b.Fatal(err)
		}
	}
	mu.Lock()
	measuring = false
	all := slices.Clone(takes)
	mu.Unlock()
	slices.Sort(all)
	if len(all) > 0 {
		b.ReportMetric(float64(all[len(all)*99/100].Nanoseconds())/1e3, "take-p99-µs")
		b.ReportMetric(float64(all[len(all)-1].Nanoseconds())/1e3, "take-max-µs")
	}
}
