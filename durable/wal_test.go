package durable

import (
	"bytes"
	"context"
	"fmt"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/spool/spooltest"
)

// fakeWriter is the InfluxDB writer's side: it keeps every line written
// and reports batches durable when told.
type fakeWriter struct {
	mu       sync.Mutex
	lines    []string
	seq      uint64 // batch being filled
	durable  uint64
	progress chan struct{}
}

func newFakeWriter() *fakeWriter { return &fakeWriter{seq: 1, progress: make(chan struct{})} }

func (w *fakeWriter) WriteSeq(b []byte) uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, l := range strings.SplitAfter(string(b), "\n") {
		if l != "" {
			w.lines = append(w.lines, l)
		}
	}
	return w.seq
}

func (w *fakeWriter) Mark() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seq
}

func (w *fakeWriter) Durable() (uint64, <-chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.durable, w.progress
}

// flush makes every batch so far durable and starts a new one.
func (w *fakeWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.durable = w.seq
	w.seq++
	close(w.progress)
	w.progress = make(chan struct{})
}

func (w *fakeWriter) got() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.lines...)
}

func line(i int) []byte {
	return fmt.Appendf(nil, "electrical,device=d%d seq=%di %d\n", i%7, i, 1_700_000_000_000+i)
}

func runLog(t *testing.T, l *Log) (stop func()) {
	t.Helper()
	stop2 := runLogErr(l)
	return func() {
		if err := stop2(); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

func runLogErr(l *Log) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return func() error {
		cancel()
		return <-done
	}
}

// await is a waiting Take: it returns once ack was called.
func await(l *Log) {
	c := make(chan struct{})
	l.Await(func() { close(c) })
	<-c
}

// TestLogAckAfterFsync: an ack comes only once the message's lines are in
// a synced segment file, never before; without a Run nothing is acked.
func TestLogAckAfterFsync(t *testing.T) {
	dir := t.TempDir()
	w := newFakeWriter()
	l, err := OpenLog(dir, time.Millisecond, w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.Write(line(1))
	var acked atomic.Bool
	l.Await(func() { acked.Store(true) })
	if acked.Load() {
		t.Fatal("acknowledged before the log was synced")
	}
	if got := w.got(); len(got) != 1 {
		t.Fatalf("writer got %q, want the line at once", got)
	}
	stop := runLog(t, l)
	c := make(chan struct{})
	l.Await(func() {
		if !acked.Load() {
			t.Error("acks out of order")
		}
		// The line is in a segment file when the ack comes.
		if !segmentsHold(t, dir, line(1)) {
			t.Error("ack before the line was in the log")
		}
		close(c)
	})
	<-c
	stop()
}

func segmentsHold(t *testing.T, dir string, b []byte) bool {
	files, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(data, b) {
			return true
		}
	}
	return false
}

// TestLogReplay: what a killed firewatch acknowledged is written again at
// the next start; what the writer made durable is not; a replay that is
// killed before the writer made it durable is replayed once more
// (idempotent: the same lines, and InfluxDB keeps one point per series and
// time).
func TestLogReplay(t *testing.T) {
	dir := t.TempDir()
	w := newFakeWriter()
	l, err := OpenLog(dir, time.Millisecond, w, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop := runLog(t, l)
	var all []string
	for i := range 10 {
		l.Write(line(i))
		await(l)
		all = append(all, string(line(i)))
	}
	w.flush() // lines 0..9 are in InfluxDB
	testenv.WaitFor(t, 10*time.Second, "the written records committed out of the log", func() bool { return l.sp.Len() == 0 })
	var want []string
	for i := 10; i < 30; i++ {
		l.Write(line(i))
		await(l)
		want = append(want, string(line(i)))
		all = append(all, string(line(i)))
	}
	// kill -9: the log is abandoned as it is on disk (its records are
	// synced; the process's memory is gone).
	_ = stop

	for round := range 2 { // the second: killed again during the replay
		w2 := newFakeWriter()
		l2, err := OpenLog(dir, time.Millisecond, w2, Options{})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		// The replay ends with the lines acknowledged since the writer's
		// last write, in order; it may begin with lines written since the
		// log's last rewrite of its ack file (at most a second before).
		got := strings.Join(w2.got(), "")
		if !strings.HasSuffix(got, strings.Join(want, "")) || !strings.Contains(strings.Join(all, ""), got) {
			t.Fatalf("round %d: replayed %q, want the %d lines acknowledged since the last write %q", round, got, len(want), want)
		}
		if got := testutil.ToFloat64(l2.m.replayed); got != float64(len(w2.got())) {
			t.Errorf("round %d: replayed counter %v, want %d", round, got, len(w2.got()))
		}
		l2.sp.Close()
	}
	// Once the writer reports the replay durable, the log is empty.
	w3 := newFakeWriter()
	l3, err := OpenLog(dir, time.Millisecond, w3, Options{})
	if err != nil {
		t.Fatal(err)
	}
	stop3 := runLog(t, l3)
	w3.flush()
	testenv.WaitFor(t, 10*time.Second, "the replayed records committed out of the log", func() bool { return l3.sp.Len() == 0 })
	stop3()
	w4 := newFakeWriter()
	l4, err := OpenLog(dir, time.Millisecond, w4, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got := w4.got(); len(got) != 0 {
		t.Errorf("replayed %q after the writer made everything durable", got)
	}
	l4.sp.Close()
}

// TestLogGroupCommit: many devices' messages at once share fsyncs: 2,000
// messages from 50 connections, each waiting for its ack, cost far fewer
// commits than messages.
func TestLogGroupCommit(t *testing.T) {
	w := newFakeWriter()
	fs := spooltest.New()
	l, err := OpenLog("wal", 2*time.Millisecond, w, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	stop := runLog(t, l)
	const conns, each = 50, 40
	var wg sync.WaitGroup
	for c := range conns {
		wg.Go(func() {
			for i := range each {
				l.Write(line(c*each + i))
				await(l)
			}
		})
	}
	wg.Wait()
	stop()
	commits := testutil.ToFloat64(l.m.commits)
	t.Logf("%d messages, %v group commits (fsyncs)", conns*each, commits)
	if commits == 0 || commits > conns*each/5 {
		t.Errorf("%v commits for %d messages: want at most one per 5 messages", commits, conns*each)
	}
	if got := len(w.got()); got != conns*each {
		t.Errorf("writer got %d lines, want %d", got, conns*each)
	}
}

// TestLogCrashEverywhere cuts the power at every file operation of a run
// (tearing the write it cuts), then restarts: every line whose message was
// acknowledged before the cut is replayed, every replayed record is whole
// line protocol, and nothing is replayed that was not written.
func TestLogCrashEverywhere(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FW_WAL_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("seed %d (FW_WAL_SEED)", seed)
	rng := rand.New(rand.NewPCG(seed, 15))
	const msgs = 40
	for die := 0; ; die++ {
		fs := spooltest.New()
		w := newFakeWriter()
		l, err := OpenLog("wal", 100*time.Microsecond, w, Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		fs.DieAfter(die, rng.IntN(64))
		stop := runLogErr(l)
		var acked []string
		for i := range msgs {
			l.Write(line(i))
			await(l)
			// A message acknowledged after the log failed was acknowledged
			// without it (the degraded path); a power cut kills the
			// process with it, so that ack never leaves.
			if testutil.ToFloat64(l.m.errors) == 0 {
				acked = append(acked, string(line(i)))
			}
			if i == msgs/2 {
				w.flush() // some records committed out of the log
			}
		}
		stop() // fails once the power is gone
		cut := testutil.ToFloat64(l.m.errors) > 0
		{
			tail := spooltest.Tail(die % 3) // cut, zero-filled or garbage
			c := fs
			c.Crash(rng, tail)
			w2 := newFakeWriter()
			l2, err := OpenLog("wal", time.Millisecond, w2, Options{FS: c})
			if err != nil {
				t.Fatalf("die after %d, tail %d: reopen: %v (seed %d)", die, tail, err, seed)
			}
			got := w2.got()
			in := map[string]bool{}
			for _, g := range got {
				in[g] = true
				if !strings.HasPrefix(g, "electrical,") || !strings.HasSuffix(g, "\n") {
					t.Fatalf("die after %d: replayed a broken line %q (seed %d)", die, g, seed)
				}
			}
			// Acknowledged before the flush: the writer had them durable;
			// after it: they must be replayed.
			for _, a := range acked[min(len(acked), msgs/2+1):] {
				if !in[a] {
					t.Fatalf("die after %d, tail %d: acknowledged %q not replayed; replayed %d lines (seed %d)", die, tail, a, len(got), seed)
				}
			}
			l2.sp.Close()
		}
		if !cut {
			t.Logf("the power outlived the run from %d operations on", die)
			return
		}
	}
}

// TestLogDiskFailsAcksGoOn: a failing disk does not hold back
// acknowledgements (a device's later alarms would wait behind them); the
// failures are counted, and the log works again once the disk does.
func TestLogDiskFailsAcksGoOn(t *testing.T) {
	fs := spooltest.New()
	w := newFakeWriter()
	l, err := OpenLog("wal", time.Millisecond, w, Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	stop := runLog(t, l)
	defer stop()
	fs.Inject(spooltest.Fault{Op: spooltest.OpSync, Err: spooltest.EIO})
	for i := range 5 {
		l.Write(line(i))
		await(l) // returns: not stalled
	}
	if got := testutil.ToFloat64(l.m.errors); got == 0 {
		t.Error("failed appends not counted")
	}
	fs.Heal()
	before := testutil.ToFloat64(l.m.commits)
	l.Write(line(9))
	await(l)
	if testutil.ToFloat64(l.m.commits) <= before {
		t.Error("the log did not work again after the disk healed")
	}
}

func TestDecodeRecord(t *testing.T) {
	for _, c := range []struct {
		rec   string
		lines int
		ok    bool
	}{
		{"Lm f=1 1\n", 1, true},
		{"Lm f=1 1\nm f=2 2\n", 2, true},
		{"", 0, false},
		{"L", 0, false},
		{"Lm f=1 1", 0, false},
		{"Xm f=1 1\n", 0, false},
		{"Lm f=\x001 1\n", 0, false},
	} {
		_, n, err := DecodeRecord([]byte(c.rec))
		if (err == nil) != c.ok || n != c.lines {
			t.Errorf("DecodeRecord(%q) = %d, %v; want %d lines, ok %v", c.rec, n, err, c.lines, c.ok)
		}
	}
}
