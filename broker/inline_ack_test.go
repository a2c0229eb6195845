package broker

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"
)

// TestAckInlineSource (issue 19): the hook hands each message over and
// returns; the connection's next messages are handled before the first is
// acknowledged; the PUBACKs go out when the handler calls ack, in order; a
// refused message gets none, and those after it get theirs.
func TestAckInlineSource(t *testing.T) {
	type msg struct {
		payload string
		ack     func()
	}
	got := make(chan msg, 8)
	src := NewAckInlineSource(func(topic string, payload []byte, ack func()) error {
		got <- msg{string(payload), ack}
		if string(payload) == "refused" {
			return errors.New("not stored")
		}
		return nil
	})
	_, addr := startInline(t, src)
	c := dialHand(t, addr, "d1")
	ack := make([]byte, 4)
	// Four QoS 1 PUBLISHes, ids 1 to 4, in one write.
	var burst []byte
	for id, payload := range []string{"a", "refused", "c", "d"} {
		burst = qos1(burst, "fw/v1/up/d1/event", uint16(id+1), payload)
	}
	c.Write(burst)
	var ms []msg
	for range 4 {
		select {
		case m := <-got:
			ms = append(ms, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("the handler got %d of 4 messages before any was acknowledged", len(ms))
		}
	}
	for i, want := range []string{"a", "refused", "c", "d"} {
		if ms[i].payload != want {
			t.Fatalf("message %d: %q, want %q", i, ms[i].payload, want)
		}
	}
	// Nothing acknowledged yet: no PUBACK may be on the wire.
	c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(ack); n > 0 || !errors.Is(err, context.DeadlineExceeded) && !isTimeout(err) {
		t.Fatalf("read %d bytes (% x) before any ack: %v", n, ack[:n], err)
	}
	ms[0].ack()
	ms[2].ack()
	ms[3].ack()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, id := range []byte{1, 3, 4} {
		if _, err := io.ReadFull(c, ack); err != nil {
			t.Fatalf("PUBACK of %d: %v", id, err)
		}
		if ack[0] != 0x40 || ack[1] != 2 || ack[2] != 0 || ack[3] != id {
			t.Fatalf("got % x, want the PUBACK of packet %d", ack, id)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// TestAckInlineSourceStalledClient (issue 19): the acks of every connection
// are called from one goroutine (the write-ahead log's committer); a client
// whose writes are stuck (mochi holds its lock while it writes to a stalled
// link) must not hold back the PUBACKs of the others.
func TestAckInlineSourceStalledClient(t *testing.T) {
	acks := make(chan func(), 8)
	src := NewAckInlineSource(func(_ string, _ []byte, ack func()) error { acks <- ack; return nil })
	b, addr := startInline(t, src)
	dial := func(id string) net.Conn {
		c := dialHand(t, addr, id)
		c.Write(qos1(nil, "fw/v1/up/"+id+"/event", 7, "x"))
		return c
	}
	stalled := dial("d1")
	ackStalled := <-acks
	other := dial("d2")
	ackOther := <-acks

	cl, ok := b.Clients.Get("d1")
	if !ok {
		t.Fatal("client d1 not found")
	}
	cl.Lock() // d1's writer is stuck
	done := make(chan struct{})
	go func() { // the committer: d1's ack first, then d2's
		ackStalled()
		ackOther()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cl.Unlock()
		t.Fatal("the acks' caller waits for a stalled client")
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(other, ack); err != nil || ack[0] != 0x40 || ack[3] != 7 {
		cl.Unlock()
		t.Fatalf("d2's PUBACK behind a stalled d1: % x, %v", ack, err)
	}
	cl.Unlock()
	if _, err := io.ReadFull(stalled, ack); err != nil || ack[0] != 0x40 || ack[3] != 7 {
		t.Fatalf("d1's PUBACK once it is no longer stuck: % x, %v", ack, err)
	}
}
