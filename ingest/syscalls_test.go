//go:build linux

package ingest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 19: fewer than one system call per message at the MQTT edges.
// The test counts this process's read and write system calls
// (/proc/self/io) while a burst of QoS 1 messages crosses the source; the
// peer writes the burst with one system call.

// firewatch's source on an external broker takes a burst of QoS 1
// messages with far fewer system calls than messages (paho read each
// packet in three or more reads and wrote each PUBACK on its own before).
func TestSourceTakesBurstInFewCalls(t *testing.T) {
	m := testenv.StartMosquitto(t)
	const n = 500
	var got atomic.Int64
	done := make(chan struct{})
	src := NewSource(SourceConfig{Broker: m.URL, ClientID: "fw-burst", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		func(string, []byte) {
			if got.Add(1) == n {
				close(done)
			}
		})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)
	select {
	case <-src.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("source did not subscribe")
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(m.URL, "tcp://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	c.Write([]byte{0x10, 15, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 3, 'p', 'u', 'b'})
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 {
		t.Fatalf("CONNACK % x %v", ack, err)
	}
	before := testenv.IOCalls(t)
	if _, err := c.Write(testenv.PublishBurst("fw/v1/up/dev-1/telemetry", []byte(`{"m":{"battery_pct":90}}`), n)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("source got %d of %d", got.Load(), n)
	}
	// The last PUBACKs go out within the flush delay; count after they did.
	time.Sleep(20 * time.Millisecond)
	calls := testenv.IOCalls(t) - before
	t.Logf("%d messages: %d read+write system calls in this process", n, calls)
	if calls > n/2 {
		t.Fatalf("%d read+write system calls for %d messages; want fewer than one per two messages", calls, n)
	}
}
