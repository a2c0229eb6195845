package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/firewatch-iot/firewatch/internal/testenv"
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
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks: []mochi.Hook{src}})
	if err != nil {
		t.Fatal(err)
	}
	// Release the waiting handler before the broker closes (Close waits
	// for its connections).
	defer func() { close(release); b.Close() }()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go src.Run(ctx)
	<-src.Ready()

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// CONNECT (MQTT 3.1.1, clean session, client id "d1"), then two QoS 1
	// PUBLISHes (ids 1 and 2) in one write, by hand.
	c.Write([]byte{0x10, 14, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 2, 'd', '1'})
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		t.Fatalf("CONNACK % x: %v", ack, err)
	}
	topic := "fw/v1/up/d1/event"
	var burst []byte
	for id, payload := range []string{"1", "2"} {
		burst = append(burst, 0x32, byte(2+len(topic)+2+len(payload)), 0, byte(len(topic)))
		burst = append(burst, topic...)
		burst = append(burst, 0, byte(id+1))
		burst = append(burst, payload...)
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
