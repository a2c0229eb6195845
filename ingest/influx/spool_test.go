package influx

import (
	"net/http"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

// switchable answers 503 while down is set, as an InfluxDB that is
// restarting or unreachable behind a proxy does, and 204 otherwise.
func switchable(down *atomic.Bool) func(int, string) (int, string) {
	return func(int, string) (int, string) {
		if down.Load() {
			return http.StatusServiceUnavailable, "down"
		}
		return http.StatusNoContent, ""
	}
}

// sortedLines splits delivered bodies into lines, sorted, so that
// deliveries can be compared whatever the order of live and spooled batches.
func sortedLines(bodies []string) []string {
	var out []string
	for _, b := range bodies {
		out = append(out, strings.SplitAfter(b, "\n")...)
	}
	out = slicesDeleteEmpty(out)
	sort.Strings(out)
	return out
}

func slicesDeleteEmpty(s []string) []string {
	out := s[:0]
	for _, x := range s {
		if x != "" {
			out = append(out, x)
		}
	}
	return out
}

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// TestWriterSpoolOutage: while InfluxDB is down, batches beyond a tiny
// memory queue go to the spool instead of being dropped, and every line is
// delivered exactly once after it recovers.
func TestWriterSpoolOutage(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := newFakeInflux(t, switchable(&down))
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 10, MaxPending: 2, FlushInterval: time.Hour,
		SpoolDir: t.TempDir()})
	all := lines(1, 1000)
	writePaced(t, w, all, 10)
	// Wait until the sender has failed and the spiller has emptied memory:
	// all but the batch being retried are on disk.
	testenv.WaitFor(t, 20*time.Second, "batches spilled", func() bool {
		return metricValue(t, reg, "firewatch_influx_spooled_lines_total", "") >= 980
	})
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropQueueFull); v != 0 {
		t.Fatalf("dropped{queue_full} = %v with a spool", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_spool_batches", ""); v < 98 {
		t.Errorf("spool_batches = %v, want ≥ 98", v)
	}
	down.Store(false)
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	_, bodies := f.got()
	if got, want := sortedLines(bodies), sortedCopy(all); strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("delivered %d lines, want each of %d exactly once", len(got), len(want))
	}
	if v := metricValue(t, reg, "firewatch_influx_replayed_lines_total", ""); v < 980 {
		t.Errorf("replayed_lines = %v, want ≥ 980", v)
	}
	if v := metricValue(t, reg, "firewatch_influx_spool_batches", ""); v != 0 {
		t.Errorf("spool_batches = %v after the replay", v)
	}
}

// TestWriterSpoolSurvivesRestart: what is in memory at shutdown while
// InfluxDB is down goes to the spool, and the next writer on the same
// directory delivers it.
func TestWriterSpoolSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	var down atomic.Bool
	down.Store(true)
	f := newFakeInflux(t, switchable(&down))
	cfg := Config{URL: f.srv.URL, BatchLines: 10, MaxPending: 64, FlushInterval: time.Hour,
		ShutdownTimeout: 5 * time.Second, SpoolDir: dir}
	w1, reg1, stop1 := startWriter(t, cfg)
	all := lines(1, 205) // the last 5 stay in the current batch until shutdown
	for _, l := range all {
		w1.Write([]byte(l))
	}
	testenv.WaitFor(t, 20*time.Second, "a failed attempt", func() bool {
		return metricValue(t, reg1, "firewatch_influx_write_errors_total", "") >= 1
	})
	if err := stop1(); err != nil {
		t.Fatalf("Run = %v, want nil: nothing should be lost with a spool", err)
	}
	if _, bodies := f.got(); len(bodies) != 0 {
		t.Fatalf("delivered %d bodies while down", len(bodies))
	}

	down.Store(false)
	w2, reg2, _ := startWriter(t, cfg)
	if v := metricValue(t, reg2, "firewatch_influx_spool_batches", ""); v != 21 {
		t.Errorf("spool_batches at start = %v, want 21", v)
	}
	if err := flush(t, w2); err != nil {
		t.Fatal(err)
	}
	_, bodies := f.got()
	if got, want := sortedLines(bodies), sortedCopy(all); strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("delivered %d lines after the restart, want each of %d exactly once", len(got), len(want))
	}
	// Spooled batches are replayed oldest first.
	if !strings.HasPrefix(bodies[0], all[0]) {
		t.Errorf("first replayed batch starts %q, want %q", strings.SplitN(bodies[0], "\n", 2)[0], all[0])
	}
}

// TestWriterSpoolFull: beyond its bound the spool drops its oldest batches
// and counts their lines; the newest survive.
func TestWriterSpoolFull(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := newFakeInflux(t, switchable(&down))
	cfg := Config{URL: f.srv.URL, BatchLines: 10, MaxPending: 2, FlushInterval: time.Hour, SpoolDir: t.TempDir(),
		spoolBytes: 16 << 10, spoolSegment: 2 << 10}
	w, reg, _ := startWriter(t, cfg)
	all := lines(1, 2000) // about 80 KB: five times the bound
	writePaced(t, w, all, 10)
	testenv.WaitFor(t, 20*time.Second, "batches spilled", func() bool {
		return metricValue(t, reg, "firewatch_influx_spooled_lines_total", "") >= 1980
	})
	dropped := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropSpoolFull)
	if dropped == 0 {
		t.Fatal("nothing dropped with five times the spool's bound")
	}
	if v := metricValue(t, reg, "firewatch_influx_spool_bytes", ""); v > 16<<10+2<<10 {
		t.Errorf("spool_bytes = %v, over the bound", v)
	}
	down.Store(false)
	err := flush(t, w)
	_, bodies := f.got()
	got := sortedLines(bodies)
	if len(got)+int(dropped) != len(all) {
		t.Errorf("%d delivered + %v dropped ≠ %d written (Flush: %v)", len(got), dropped, len(all), err)
	}
	if !strings.Contains(strings.Join(bodies, ""), all[len(all)-1]) {
		t.Errorf("newest line %q lost", all[len(all)-1])
	}
}

// writePaced writes lines a batch at a time and waits after each until
// the memory queue has room again: a producer slower than the disk. (Write
// never blocks; a burst faster than fsync fills the memory queue, which is
// what max_pending is for.)
func writePaced(t *testing.T, w *Writer, all []string, batch int) {
	t.Helper()
	for i, l := range all {
		w.Write([]byte(l))
		if (i+1)%batch == 0 {
			testenv.WaitFor(t, 10*time.Second, "room in the memory queue", func() bool { return w.pending() < w.cfg.MaxPending })
		}
	}
}

// TestWriterSpoolDiskFaults: the spool's disk fails while InfluxDB is
// down (appends ENOSPC: batches stay in memory), then its reads fail while
// InfluxDB is back (live batches go on): once the disk is healed every
// line is delivered exactly once.
func TestWriterSpoolDiskFaults(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	f := newFakeInflux(t, switchable(&down))
	fs := spooltest.New()
	fs.Inject(spooltest.Fault{Op: spooltest.OpWrite, Err: spooltest.ENOSPC})
	w, reg, _ := startWriter(t, Config{URL: f.srv.URL, BatchLines: 10, MaxPending: 64, FlushInterval: time.Hour,
		SpoolDir: "/spool", spoolFS: fs})
	all := lines(1, 2000)
	for _, l := range all[:200] {
		w.Write([]byte(l))
	}
	testenv.WaitFor(t, 20*time.Second, "failed spill attempts", func() bool { return fs.Struck() >= 2 })
	if v := metricValue(t, reg, "firewatch_influx_dropped_lines_total", DropQueueFull); v != 0 {
		t.Fatalf("dropped{queue_full} = %v while the queue has room", v)
	}
	fs.Heal()
	testenv.WaitFor(t, 20*time.Second, "batches spilled once the disk has room", func() bool {
		return metricValue(t, reg, "firewatch_influx_spooled_lines_total", "") >= 150
	})
	fs.Inject(spooltest.Fault{Op: spooltest.OpRead, Err: spooltest.EIO})
	down.Store(false)
	next := 200
	testenv.WaitFor(t, 20*time.Second, "live batches while the spool cannot be read", func() bool {
		if next < len(all) {
			for _, l := range all[next : next+10] {
				w.Write([]byte(l))
			}
			next += 10
			w.rotate()
			w.signal()
		}
		_, bodies := f.got()
		return len(bodies) > 0
	})
	all = all[:next]
	fs.Heal()
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	_, bodies := f.got()
	if got, want := sortedLines(bodies), sortedCopy(all); strings.Join(got, "") != strings.Join(want, "") {
		t.Fatalf("delivered %d lines, want each of %d exactly once", len(got), len(want))
	}
}
