package pipeline

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/rules"
)

// stream is a deterministic mix of telemetry crossing thresholds, with
// replays, for the test ledger's devices.
func stream(n int) [][2]string {
	rng := rand.New(rand.NewPCG(7, 8))
	var out [][2]string
	seq := map[string]int{}
	ts := int64(1_795_000_000_000)
	for i := 0; i < n; i++ {
		ts += int64(rng.IntN(3000))
		switch rng.IntN(4) {
		case 0:
			seq["el-1"]++
			out = append(out, [2]string{"fw/v1/up/el-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"residual_current_ma":%d}}`, ts, seq["el-1"], 150+rng.IntN(300))})
		case 1:
			seq["ch-1"]++
			out = append(out, [2]string{"fw/v1/up/ch-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"ch":%d,"m":{"slot_temp_c":%d}}`, ts, seq["ch-1"], 1+rng.IntN(3), 40+rng.IntN(35))})
		case 2:
			seq["hy-1"]++
			out = append(out, [2]string{"fw/v1/up/hy-1/telemetry", fmt.Sprintf(`{"ts":%d,"seq":%d,"m":{"pressure_mpa":%.2f}}`, ts, seq["hy-1"], 0.05+rng.Float64()*0.3)})
		case 3:
			if len(out) > 0 { // a gateway replays an earlier message
				out = append(out, out[rng.IntN(len(out))])
			}
		}
	}
	return out
}

func TestReloadUnderRunningStream(t *testing.T) {
	msgs := stream(20000)
	swaps := 0
	run := func(reload bool) []rules.Event {
		p, _, events, _ := newTestPipeline(t)
		// A fixed receive time: a replay older than the duplicate memory
		// is evaluated at it (docs/rules.md, "Clocks"), and both runs must
		// see the same.
		p.clock.ms.Store(1_796_000_000_000)
		p.swapped = func(*rules.Engine) { swaps++ }
		var wg sync.WaitGroup
		stop := make(chan struct{})
		if reload {
			wg.Add(1)
			go func() { // the reloader's goroutine
				defer wg.Done()
				for i := 0; i < 50; i++ {
					select {
					case <-stop:
						return
					default:
					}
					set, err := rules.Defaults()
					if err != nil {
						t.Error(err)
						return
					}
					e, err := rules.NewEngine(set, p.dec.Ledger())
					if err != nil {
						t.Error(err)
						return
					}
					p.next.Store(e)
				}
			}()
		}
		for _, m := range msgs {
			p.handle(m[0], []byte(m[1]))
		}
		close(stop)
		wg.Wait()
		return events.evs
	}
	want, got := run(false), run(true)
	if swaps == 0 {
		t.Fatal("no engine was swapped in during the stream: the test proves nothing")
	}
	t.Logf("%d engines swapped in during %d messages", swaps, len(msgs))
	if len(want) < 10 {
		t.Fatalf("the stream raised only %d events", len(want))
	}
	if len(got) != len(want) {
		t.Fatalf("with reloads %d events, without %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Rule.ID != want[i].Rule.ID || got[i].Transition != want[i].Transition || got[i].Time != want[i].Time || got[i].Channel != want[i].Channel {
			t.Fatalf("event %d: %s %s at %d, want %s %s at %d", i, got[i].Rule.ID, got[i].Transition, got[i].Time, want[i].Rule.ID, want[i].Transition, want[i].Time)
		}
	}
}

func TestReloader(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rules.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("rules:\n  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, severity: alarm}\n")
	p, _, events, _ := newTestPipeline(t)
	r := newRulesReloader(path, p.dec.Ledger(), p, discardLogger(), prometheus.NewRegistry())

	write("rules:\n  - {id: rc, kind: electrical, metric: residual_current_ma, above: 300, clear: 350, severity: alarm}\n")
	if r.reload("test") {
		t.Fatal("an invalid file was accepted")
	}
	if n := testutil.ToFloat64(r.results.WithLabelValues("rejected")); n != 1 {
		t.Fatalf("rejected = %v", n)
	}
	if p.next.Load() != nil {
		t.Fatal("an invalid file reached the pipeline")
	}

	write("rules:\n  - {id: rc, kind: electrical, metric: residual_current_ma, above: 100, severity: alarm}\n")
	if !r.reload("test") {
		t.Fatal("a valid file was rejected")
	}
	p.handle("fw/v1/up/el-1/telemetry", []byte(`{"ts":1000,"m":{"residual_current_ma":150}}`))
	if n := testutil.ToFloat64(r.results.WithLabelValues("applied")); n != 1 {
		t.Fatalf("applied = %v", n)
	}
	if len(events.evs) != 1 || events.evs[0].Rule.Threshold != 100 || !strings.HasSuffix(p.eng.Set().File, "rules.yaml") {
		t.Fatalf("the reloaded rule is not in force: %+v", events.evs)
	}
}

// Changing the rule file on disk is noticed by the poll and reaches the
// pipeline, without a signal.
func TestReloaderNoticesFileChange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(path, []byte("rules:\n  - {id: a, kind: smoke, event: smoke_alarm, severity: fire}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, _, _, _ := newTestPipeline(t)
	r := newRulesReloader(path, p.dec.Ledger(), p, discardLogger(), prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.run(ctx) }()
	defer func() { cancel(); <-done }()
	// A different size, so the change is seen even within the file
	// system's timestamp resolution.
	if err := os.WriteFile(path, []byte("rules:\n  - {id: b, kind: smoke, event: tamper, severity: fault}\n  - {id: c, kind: smoke, event: fault, severity: fault}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * reloadPoll)
	for p.next.Load() == nil {
		if time.Now().After(deadline) {
			t.Fatalf("the changed file was not reloaded within %v", 3*reloadPoll)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(p.next.Load().Set().Rules); n != 2 {
		t.Fatalf("reloaded %d rules, want 2", n)
	}
}
