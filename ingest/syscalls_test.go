//go:build linux

package ingest

import (
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// Issue 19: fewer than one system call per message at the MQTT edges.
// These tests count this process's read and write system calls
// (/proc/self/io) while a burst of QoS 1 messages crosses one edge; the
// peer writes the burst with one system call and only reads the replies.

// ioCalls is this process's read and write system calls so far.
func ioCalls(t *testing.T) int64 {
	t.Helper()
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		t.Skipf("no /proc/self/io: %v", err)
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && (k == "syscr" || k == "syscw") {
			x, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += x
		}
	}
	return n
}

// publishBurst is n QoS 1 PUBLISH packets (packet ids 1…n) on topic, hand
// built (MQTT 3.1.1, 3.3).
func publishBurst(topic string, payload []byte, n int) []byte {
	var out []byte
	for i := 1; i <= n; i++ {
		rem := 2 + len(topic) + 2 + len(payload)
		out = append(out, 0x32, byte(rem))
		out = binary.BigEndian.AppendUint16(out, uint16(len(topic)))
		out = append(out, topic...)
		out = binary.BigEndian.AppendUint16(out, uint16(i))
		out = append(out, payload...)
	}
	return out
}

// The embedded broker acknowledges a burst of QoS 1 publishes with far
// fewer writes than messages (it wrote one PUBACK per message before).
func TestBrokerAcksBurstInFewWrites(t *testing.T) {
	var handled atomic.Int64
	src := NewInlineSource(func(string, []byte) { handled.Add(1) })
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := StartBroker(BrokerConfig{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks: []mochi.Hook{src}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go src.Run(ctx)
	<-src.Ready()
	t.Cleanup(func() { cancel(); s.Close() })

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
	burst := publishBurst("fw/v1/up/dev-1/telemetry", []byte(`{"m":{"battery_pct":90}}`), n)
	before := ioCalls(t)
	if _, err := c.Write(burst); err != nil {
		t.Fatal(err)
	}
	acks := make([]byte, 4*n)
	if _, err := io.ReadFull(c, acks); err != nil {
		t.Fatalf("PUBACKs: %v", err)
	}
	calls := ioCalls(t) - before
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
	before := ioCalls(t)
	if _, err := c.Write(publishBurst("fw/v1/up/dev-1/telemetry", []byte(`{"m":{"battery_pct":90}}`), n)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("source got %d of %d", got.Load(), n)
	}
	// The last PUBACKs go out within the flush delay; count after they did.
	time.Sleep(20 * time.Millisecond)
	calls := ioCalls(t) - before
	t.Logf("%d messages: %d read+write system calls in this process", n, calls)
	if calls > n/2 {
		t.Fatalf("%d read+write system calls for %d messages; want fewer than one per two messages", calls, n)
	}
}
