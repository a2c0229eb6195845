package spool

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

func rec(i int) []byte { return []byte(fmt.Sprintf("record-%06d", i)) }

func open(t testing.TB, dir string, opt Options) *Spool {
	t.Helper()
	s, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// drain peeks and commits everything, in batches of n, returning the records.
type peeker interface {
	Peek(max, maxBytes int) ([][]byte, error)
	Commit(n int) error
}

func drain(t testing.TB, s peeker, n int) [][]byte {
	t.Helper()
	var out [][]byte
	for {
		recs, err := s.Peek(n, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			return out
		}
		out = append(out, recs...)
		if err := s.Commit(len(recs)); err != nil {
			t.Fatal(err)
		}
	}
}

func TestFIFOAcrossSegmentsAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 256})
	for i := range 100 {
		if err := s.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	if s.Len() != 100 {
		t.Fatalf("Len = %d", s.Len())
	}
	// Deliver 30, then peek 10 more without committing (in flight at the crash).
	got := drain(t, &limited{s, 30}, 10)
	if len(got) != 30 {
		t.Fatalf("drained %d", len(got))
	}
	if _, err := s.Peek(10, 1<<20); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 256})
	defer s.Close()
	if s.Len() != 70 {
		t.Fatalf("after restart Len = %d, want 70", s.Len())
	}
	rest := drain(t, s, 7)
	for i, r := range rest {
		if !bytes.Equal(r, rec(30+i)) {
			t.Fatalf("record %d = %s, want %s", i, r, rec(30+i))
		}
	}
	if s.Len() != 0 {
		t.Errorf("Len after drain = %d", s.Len())
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) != 1 {
		t.Errorf("%d segment files left after everything was committed, want 1 (the tail)", len(segs))
	}
}

// limited is a Spool whose drain stops after n records.
type limited struct {
	*Spool
	n int
}

func (l *limited) Peek(max, maxBytes int) ([][]byte, error) {
	if l.n <= 0 {
		return nil, nil
	}
	recs, err := l.Spool.Peek(min(max, l.n), maxBytes)
	l.n -= len(recs)
	return recs, err
}

func TestTornTailIsCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	for i := range 5 {
		s.Append(rec(i))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	// A power cut in the middle of the sixth record's write.
	f.Write([]byte{20, 0, 0, 0, 1, 2, 3, 4, 'x'})
	f.Close()
	s = open(t, dir, Options{})
	defer s.Close()
	if s.Len() != 5 {
		t.Fatalf("Len = %d, want the 5 whole records", s.Len())
	}
	s.Append(rec(5))
	got := drain(t, s, 100)
	if len(got) != 6 || !bytes.Equal(got[5], rec(5)) {
		t.Fatalf("after recovery got %q", got)
	}
}

func TestCorruptRecordIsCut(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	for i := range 5 {
		s.Append(rec(i))
	}
	s.Close()
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	b, _ := os.ReadFile(segs[0])
	b[len(b)-1] ^= 0xFF // last record's payload no longer matches its CRC
	os.WriteFile(segs[0], b, 0o644)
	s = open(t, dir, Options{})
	defer s.Close()
	if s.Len() != 4 {
		t.Fatalf("Len = %d, want 4", s.Len())
	}
}

// TestDropPolicy fills a small spool with data and some events: the
// events survive, the newest data survives, the oldest data goes.
func TestDropPolicy(t *testing.T) {
	dir := t.TempDir()
	keep := func(r []byte) bool { return bytes.HasPrefix(r, []byte("event")) }
	var onDrop uint64
	s := open(t, dir, Options{MaxBytes: 4096, SegmentBytes: 512, Keep: keep, OnDrop: func(r []byte) {
		if keep(r) {
			t.Errorf("OnDrop(%q): a kept record was dropped", r)
		}
		onDrop++
	}})
	defer s.Close()
	const n = 1000
	for i := range n {
		r := rec(i)
		if i%100 == 0 {
			r = []byte("event-" + strconv.Itoa(i))
		}
		if err := s.Append(r); err != nil {
			t.Fatal(err)
		}
	}
	if s.Bytes() > 4096+512 {
		t.Errorf("Bytes = %d, over the bound", s.Bytes())
	}
	if s.Dropped() == 0 {
		t.Fatal("nothing dropped")
	}
	if onDrop != s.Dropped() {
		t.Errorf("OnDrop called %d times, Dropped = %d", onDrop, s.Dropped())
	}
	got := drain(t, s, 50)
	if uint64(len(got))+s.Dropped() != n {
		t.Errorf("%d delivered + %d dropped ≠ %d appended", len(got), s.Dropped(), n)
	}
	events := 0
	for _, r := range got {
		if keep(r) {
			events++
		}
	}
	if events != 10 {
		t.Errorf("%d of 10 events survived", events)
	}
	if last := got[len(got)-1]; !bytes.Equal(last, rec(n-1)) {
		t.Errorf("newest record %s lost", rec(n-1))
	}
}

// TestDropSparesInFlight: the records a Peek returned are not dropped
// before they are committed.
func TestDropSparesInFlight(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 2048, SegmentBytes: 256})
	defer s.Close()
	for i := range 10 {
		s.Append(rec(i))
	}
	first, _ := s.Peek(5, 1<<20)
	for i := 10; i < 500; i++ {
		s.Append(rec(i))
	}
	if err := s.Commit(len(first)); err != nil {
		t.Fatal(err)
	}
	got := drain(t, s, 100)
	if uint64(len(got)+len(first))+s.Dropped() != 500 {
		t.Errorf("%d + %d delivered, %d dropped, of 500", len(first), len(got), s.Dropped())
	}
	for i := 1; i < len(got); i++ {
		if bytes.Compare(got[i-1], got[i]) >= 0 {
			t.Fatalf("out of order: %s then %s", got[i-1], got[i])
		}
	}
}

// BenchmarkAppend appends 200-byte records (a gateway batch element is
// about 120 bytes, an InfluxDB line about 200) one at a time or ten per
// AppendBatch, under both fsync policies.
func BenchmarkAppend(b *testing.B) {
	r := bytes.Repeat([]byte("x"), 200)
	for _, c := range []struct {
		name  string
		batch int
		opt   Options
	}{
		{"one/sync-each", 1, Options{MaxBytes: 1 << 30}},
		{"batch10/sync-each", 10, Options{MaxBytes: 1 << 30}},
		{"one/sync-1s", 1, Options{MaxBytes: 1 << 30, SyncEvery: time.Second}},
	} {
		b.Run(c.name, func(b *testing.B) {
			s := open(b, b.TempDir(), c.opt)
			defer s.Close()
			recs := make([][]byte, c.batch)
			for i := range recs {
				recs[i] = r
			}
			n := 0
			for b.Loop() {
				if err := s.AppendBatch(recs); err != nil {
					b.Fatal(err)
				}
				n += c.batch
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkDrain is the forwarder's side: peek 200 records, commit them.
func BenchmarkDrain(b *testing.B) {
	s := open(b, b.TempDir(), Options{MaxBytes: 1 << 30, SyncEvery: time.Second, AckEvery: time.Second})
	defer s.Close()
	r := bytes.Repeat([]byte("x"), 200)
	batch := make([][]byte, 200)
	for i := range batch {
		batch[i] = r
	}
	n := 0
	for b.Loop() {
		b.StopTimer()
		if err := s.AppendBatch(batch); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		recs, err := s.Peek(200, 1<<20)
		if err != nil || len(recs) != 200 {
			b.Fatalf("peek: %d, %v", len(recs), err)
		}
		if err := s.Commit(len(recs)); err != nil {
			b.Fatal(err)
		}
		n += len(recs)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}
