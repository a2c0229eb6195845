//go:build linux

package broker

import (
	"encoding/binary"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 19: fewer than one system call per message at the MQTT edges.
// The test counts this process's read and write system calls
// (/proc/self/io) while a burst of QoS 1 messages crosses the broker; the
// peer writes the burst with one system call and only reads the replies.

// The embedded broker acknowledges a burst of QoS 1 publishes with far
// fewer writes than messages (it wrote one PUBACK per message before).
func TestBrokerAcksBurstInFewWrites(t *testing.T) {
	var handled atomic.Int64
	src := NewInlineSource(func(string, []byte) { handled.Add(1) })
	_, addr := startInline(t, src)

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	// CONNECT, client id "burst", clean session, keepalive 60 s.
	c.Write([]byte{0x10, 17, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 5, 'b', 'u', 'r', 's', 't'})
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x %v", ack, err)
	}
	const n = 500
	burst := testenv.PublishBurst("fw/v1/up/dev-1/telemetry", []byte(`{"m":{"battery_pct":90}}`), n)
	before := testenv.IOCalls(t)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	acks := make([]byte, 4*n)
	if _, err := io.ReadFull(c, acks); err != nil {
		t.Fatalf("PUBACKs: %v", err)
	}
	calls := testenv.IOCalls(t) - before
	for i := range n {
		a := acks[4*i:]
		if a[0] != 0x40 || a[1] != 2 || binary.BigEndian.Uint16(a[2:]) != uint16(i+1) {
			t.Fatalf("PUBACK %d: % x", i, a[:4])
		}
	}
	if handled.Load() != n {
		t.Fatalf("handled %d of %d", handled.Load(), n)
	}
	t.Logf("%d messages: %d read+write system calls in this process (broker and client)", n, calls)
	if calls > n/2 {
		t.Fatalf("%d read+write system calls for %d messages; want fewer than one per two messages", calls, n)
	}
}
