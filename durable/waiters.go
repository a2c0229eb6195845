package durable

import "context"

// Writer is what the trackers need of the InfluxDB writer (influx.Writer).
type Writer interface {
	// WriteSeq adds lines to the current batch and returns that batch's
	// sequence number.
	WriteSeq(lines []byte) uint64
	// Mark is the sequence number of the batch being filled.
	Mark() uint64
	// Durable returns the sequence number up to which every batch is
	// written to InfluxDB or its on-disk spool, and a channel closed when
	// that may have changed.
	Durable() (uint64, <-chan struct{})
}

// Tracker is Log or Written: the pipeline's Lines and Durability.
type Tracker interface {
	// Write passes lines to the writer (and to the log).
	Write(lines []byte)
	// Await calls ack once every line written before the call is durable,
	// possibly at once, in this goroutine, or later, in the tracker's.
	// Acks are called in the order of the Await calls.
	Await(ack func())
	// Run runs the tracker until ctx ends; Await's acks wait for it.
	Run(ctx context.Context) error
}

// waiter is an acknowledgement waiting for position pos to be durable.
type waiter struct {
	pos uint64
	ack func()
}

// queue is a FIFO of waiters in position order.
type queue struct {
	w    []waiter
	head int
}

func (q *queue) push(pos uint64, ack func()) { q.w = append(q.w, waiter{pos, ack}) }

// pop moves the waiters up to pos into out and returns it.
func (q *queue) pop(pos uint64, out []func()) []func() {
	for q.head < len(q.w) && q.w[q.head].pos <= pos {
		out = append(out, q.w[q.head].ack)
		q.w[q.head] = waiter{}
		q.head++
	}
	if q.head == len(q.w) {
		q.w, q.head = q.w[:0], 0
	} else if q.head > 1024 && q.head > len(q.w)/2 {
		n := copy(q.w, q.w[q.head:])
		clear(q.w[n:])
		q.w, q.head = q.w[:n], 0
	}
	return out
}

func (q *queue) len() int { return len(q.w) - q.head }

func fire(acks []func()) []func() {
	for i, a := range acks {
		a()
		acks[i] = nil
	}
	return acks[:0]
}
