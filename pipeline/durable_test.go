package pipeline

import (
	"sync"
	"testing"
	"time"
)

// heldDurability holds every ack until release, as a write-ahead log does
// until its group commit is fsynced.
type heldDurability struct {
	mu   sync.Mutex
	acks []func()
	in   chan struct{}
}

func (d *heldDurability) Await(ack func()) {
	d.mu.Lock()
	d.acks = append(d.acks, ack)
	d.mu.Unlock()
	d.in <- struct{}{}
}

func (d *heldDurability) release() {
	d.mu.Lock()
	acks := d.acks
	d.acks = nil
	d.mu.Unlock()
	for _, a := range acks {
		a()
	}
}

// Issue 15: with a Durability, Take returns before the message is durable
// and calls its Ack only once it is, in order; a Take without Ack (a source
// that acknowledges when Take returns) returns only then.
func TestTakeAcksOnceDurable(t *testing.T) {
	p, lines, _, _ := newTestPipeline(t)
	p.alarms = &fakeAlarms{}
	d := &heldDurability{in: make(chan struct{}, 10)}
	p.durable = d
	var order []int
	msg := func(seq int, ack func()) Message {
		return Message{Origin: "test", Topic: "fw/v1/up/el-1/telemetry", Ack: ack,
			Payload: []byte(`{"ts":100` + string(rune('0'+seq)) + `,"seq":` + string(rune('0'+seq)) + `,"m":{"residual_current_ma":20}}`)}
	}
	p.Take(msg(1, func() { order = append(order, 1) }))
	p.Take(msg(2, func() { order = append(order, 2) }))
	if len(order) != 0 {
		t.Fatalf("acknowledged %v before durable", order)
	}
	if len(lines.b) == 0 {
		t.Fatal("the readings did not reach the writer before the ack")
	}
	d.release()
	if len(order) != 2 || order[0] != 1 || order[1] != 2 {
		t.Fatalf("acks %v, want [1 2]", order)
	}

	// Without Ack, Take waits.
	<-d.in
	<-d.in
	returned := make(chan struct{})
	go func() {
		p.Take(msg(3, nil))
		close(returned)
	}()
	<-d.in // it waits in Await
	select {
	case <-returned:
		t.Fatal("Take without Ack returned before the message was durable")
	case <-time.After(20 * time.Millisecond):
	}
	d.release()
	<-returned
}
