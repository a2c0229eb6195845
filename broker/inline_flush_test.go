package broker

import (
	"io"
	"testing"
	"time"
)

// Issue 15: a device that sends its next QoS 1 message before the PUBACK
// of the last gets that PUBACK while the next one waits in the handler
// (for the write-ahead log's group commit), not after it. The broker's
// coalescing connection held a PUBACK written while its reader was busy
// until the reader's next wait: here, until the second message's handler
// returned.
func TestInlineSourcePubackNotHeldByNextMessage(t *testing.T) {
	release := make(chan struct{})
	second := make(chan struct{})
	src := NewInlineSource(func(topic string, payload []byte) {
		if string(payload) == "2" {
			close(second)
			<-release // the second message waits for its commit
		}
	})
	src.HandlerWaits()
	_, addr := startInline(t, src)
	// Release the waiting handler before the broker closes (Close waits
	// for its connections): this cleanup runs before startInline's.
	t.Cleanup(func() { close(release) })
	// Two QoS 1 PUBLISHes (ids 1 and 2) in one write, by hand.
	c := dialHand(t, addr, "d1")
	ack := make([]byte, 4)
	var burst []byte
	for id, payload := range []string{"1", "2"} {
		burst = qos1(burst, "fw/v1/up/d1/event", uint16(id+1), payload)
	}
	c.Write(burst)
	<-second
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.ReadFull(c, ack); err != nil {
		t.Fatalf("no PUBACK of the first message while the second waits: %v", err)
	}
	if ack[0] != 0x40 || ack[3] != 1 {
		t.Fatalf("got % x, want the PUBACK of packet 1", ack)
	}
}
