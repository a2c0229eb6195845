package durable

import (
	"context"
	"sync"
	"sync/atomic"
)

// Written acknowledges a message once the writer reports its readings
// written to InfluxDB or to its on-disk spool (mode written). It keeps
// nothing on disk itself: a source whose sender redelivers what it did not
// acknowledge (a JetStream consumer) needs nothing more. A message waits
// for its batch: up to influx.flush_interval plus the write.
type Written struct {
	w    Writer
	last atomic.Uint64 // batch of the latest Write
	kick chan struct{}

	mu      sync.Mutex
	waiting queue
	closed  bool
}

// NewWritten returns a tracker of w.
func NewWritten(w Writer) *Written { return &Written{w: w, kick: make(chan struct{}, 1)} }

// Write passes lines to the writer.
func (t *Written) Write(lines []byte) {
	if s := t.w.WriteSeq(lines); s != 0 {
		t.last.Store(s)
	}
}

// Await calls ack once the batch of the latest Write is durable. Once Run
// returned, it calls ack at once: stop the sources before the tracker.
func (t *Written) Await(ack func()) {
	s := t.last.Load()
	if d, _ := t.w.Durable(); s <= d {
		ack()
		return
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		ack()
		return
	}
	t.waiting.push(s, ack)
	t.mu.Unlock()
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Run calls the waiting acks as the writer reports progress, until ctx
// ends; then it calls those still waiting, so that no Take blocks forever
// (their sources stopped before).
func (t *Written) Run(ctx context.Context) error {
	var acks []func()
	for {
		d, changed := t.w.Durable()
		t.mu.Lock()
		acks = t.waiting.pop(d, acks)
		t.mu.Unlock()
		acks = fire(acks)
		select {
		case <-ctx.Done():
			t.mu.Lock()
			t.closed = true
			acks = t.waiting.pop(^uint64(0), acks)
			t.mu.Unlock()
			fire(acks)
			return nil
		case <-changed:
		case <-t.kick:
		}
	}
}
