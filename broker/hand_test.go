package broker

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// startInline starts a broker on a free loopback port with src as its only
// hook and runs src until the test ends. The broker is closed at the end of
// the test, after the cleanups the test registers itself (they run first).
func startInline(tb testing.TB, src *InlineSource) (*mochi.Server, string) {
	tb.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(tb))
	b, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks: []mochi.Hook{src}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { b.Close() })
	go src.Run(tb.Context())
	<-src.Ready()
	return b, addr
}

// dialHand connects to addr as client id with a CONNECT written by hand
// (MQTT 3.1.1 §3.1: protocol name "MQTT", level 4, flags 0x02 clean
// session, keep-alive 60 s, the client id) and fails the test unless the
// CONNACK accepts it. The connection's deadline is 10 s from now.
func dialHand(tb testing.TB, addr, id string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	body := append([]byte{0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, byte(len(id))}, id...)
	if _, err := c.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		tb.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(c, ack); err != nil || ack[0] != 0x20 || ack[3] != 0 {
		tb.Fatalf("CONNACK % x: %v", ack, err)
	}
	return c
}

// qos1 appends a QoS 1 PUBLISH (MQTT 3.1.1 §3.3: fixed header 0x32, the
// remaining length in one byte, the topic with its length, the packet id,
// the payload) to dst.
func qos1(dst []byte, topic string, id uint16, payload string) []byte {
	dst = append(dst, 0x32, byte(2+len(topic)+2+len(payload)), 0, byte(len(topic)))
	dst = append(dst, topic...)
	dst = append(dst, byte(id>>8), byte(id))
	return append(dst, payload...)
}
