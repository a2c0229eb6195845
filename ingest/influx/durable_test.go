package influx

import (
	"net/http"
	"testing"
	"time"
)

// Issue 15: the writer tells which batches are durable. A batch is durable
// once InfluxDB took it, not when it is queued; Durable says so and its
// channel wakes a waiter; a batch dropped at shutdown freezes it.
func TestWriterDurable(t *testing.T) {
	f := newFakeInflux(t, nil)
	w, _, _ := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour})
	if d, _ := w.Durable(); d != 0 {
		t.Fatalf("Durable = %d before any write", d)
	}
	s := w.WriteSeq([]byte(lines(1, 1)[0]))
	if s != 1 || w.Mark() != 1 {
		t.Fatalf("WriteSeq = %d, Mark = %d; want the first batch, 1", s, w.Mark())
	}
	d, changed := w.Durable()
	if d >= s {
		t.Fatalf("Durable = %d: batch %d reported durable while in memory", d, s)
	}
	if err := flush(t, w); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("Durable's channel not closed when the batch was written")
	}
	if d, _ := w.Durable(); d < s {
		t.Fatalf("Durable = %d after batch %d was written", d, s)
	}
	if w.Mark() != 2 {
		t.Errorf("Mark = %d after the first batch was handed on, want 2", w.Mark())
	}
}

func TestWriterDurableFrozenByShutdownDrop(t *testing.T) {
	f := newFakeInflux(t, func(int, string) (int, string) { return http.StatusServiceUnavailable, "down" })
	w, _, stop := startWriter(t, Config{URL: f.srv.URL, FlushInterval: time.Hour, ShutdownTimeout: 200 * time.Millisecond})
	s := w.WriteSeq([]byte(lines(1, 1)[0]))
	stop() // InfluxDB down, no spool: the batch is dropped at the deadline
	if d, _ := w.Durable(); d >= s {
		t.Fatalf("Durable = %d: batch %d dropped at shutdown reported durable", d, s)
	}
}
