package durable

import (
	"context"
	"sync"
	"testing"
)

// TestWritten: an ack waits for its batch to be reported durable by the
// writer; acks come in order; one for a batch already durable comes at
// once; after Run, the acks still waiting are called.
func TestWritten(t *testing.T) {
	w := newFakeWriter()
	tr := NewWritten(w)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- tr.Run(ctx) }()

	now := false
	tr.Await(func() { now = true })
	if !now {
		t.Fatal("nothing written: the ack should come at once")
	}
	var mu sync.Mutex
	var order []int
	acked := make(chan int, 10)
	ack := func(i int) func() {
		return func() {
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			acked <- i
		}
	}
	tr.Write(line(1))
	tr.Await(ack(1))
	tr.Write(line(2))
	tr.Await(ack(2))
	select {
	case i := <-acked:
		t.Fatalf("ack %d before its batch was durable", i)
	default:
	}
	w.flush()
	<-acked
	<-acked
	if order[0] != 1 || order[1] != 2 {
		t.Errorf("acks in order %v", order)
	}
	tr.Write(line(3)) // in the new batch
	tr.Await(ack(3))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if i := <-acked; i != 3 {
		t.Errorf("after Run: ack %d, want 3", i)
	}
}
