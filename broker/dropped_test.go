package broker

import (
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestDroppedCounted: a subscriber that stops reading fills its socket and
// then its queue of ClientWritesPending packets; what the broker drops
// beyond that is counted in firewatch_broker_dropped_total, and nothing is
// dropped before the queue is full. QoS 0: for QoS 1, mochi's publisher
// waits for the client's lock, which its write loop holds while it is
// blocked writing, so the queue does not fill.
func TestDroppedCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// MQTT 3.1.1 CONNECT (clean session, keepalive 600 s, client id gw-1),
	// then SUBSCRIBE (packet id 1) to fw/v1/down/gw-1/cmd at QoS 1.
	if _, err := c.Write([]byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0x02, 0x58, 0, 4, 'g', 'w', '-', '1'}); err != nil {
		t.Fatal(err)
	}
	topic := "fw/v1/down/gw-1/cmd"
	sub := binary.BigEndian.AppendUint16([]byte{0, 1}, uint16(len(topic)))
	sub = append(append(sub, topic...), 1)
	if _, err := c.Write(append([]byte{0x82, byte(len(sub))}, sub...)); err != nil {
		t.Fatal(err)
	}
	var ack [9]byte // CONNACK (4 bytes), SUBACK (5 bytes)
	if _, err := io.ReadFull(c, ack[:]); err != nil || ack[0] != 0x20 || ack[4] != 0x90 || ack[8] != 1 {
		t.Fatalf("CONNACK, SUBACK % x: %v", ack, err)
	}
	// The subscriber reads no more. Publish until the broker drops.
	payload := make([]byte, 4096)
	sent := 0
	for ; sent < 20000 && dropped(t, reg) == 0; sent++ {
		if err := b.Publish(topic, payload, false, 0); err != nil {
			t.Fatal(err)
		}
	}
	got := dropped(t, reg)
	if got == 0 {
		t.Fatalf("%d publishes to a subscriber that does not read: none dropped (counted)", sent)
	}
	if sent <= ClientWritesPending {
		t.Errorf("dropped after %d publishes, before the queue of %d was full", sent, ClientWritesPending)
	}
	t.Logf("the first drop after %d publishes of 4 KiB", sent)
}

func dropped(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "firewatch_broker_dropped_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	t.Fatal("firewatch_broker_dropped_total not registered")
	return 0
}
