package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestInlineSource: with the source running, a device's QoS 1 publish is
// handled before the broker acknowledges it, other subscribers still get
// it, firewatch's own publishes are not taken for uplink, and a last will
// on an uplink topic is handled. Before Run, uplink is not acknowledged.
func TestInlineSource(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	src := NewInlineSource(func(topic string, payload []byte) {
		mu.Lock()
		got = append(got, topic+" "+string(payload))
		mu.Unlock()
	})
	handled := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), got...)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	b, err := Start(Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Hooks: []mochi.Hook{src}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	connect := func(id string) paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetAutoReconnect(false))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect %s: %v", id, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(0) })
		return c
	}
	dev := connect("sm-1")

	// Not running: no acknowledgement, not handled.
	early := dev.Publish("fw/v1/up/sm-1/event", 1, false, "early")
	if early.WaitTimeout(300 * time.Millisecond) {
		t.Errorf("a publish before Run was acknowledged (err %v)", early.Error())
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- src.Run(ctx) }()
	<-src.Ready()

	tap := connect("tap")
	tapped := make(chan string, 10)
	if tok := tap.Subscribe("fw/v1/up/#", 1, func(_ paho.Client, m paho.Message) { tapped <- string(m.Payload()) }); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	tok := dev.Publish("fw/v1/up/sm-1/event", 1, false, `{"event":"smoke_alarm"}`)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
	// Acknowledged, hence already handled: no waiting here.
	if h := handled(); len(h) != 1 || h[0] != `fw/v1/up/sm-1/event {"event":"smoke_alarm"}` {
		t.Fatalf("handled %q when the PUBACK arrived", h)
	}
	select {
	case p := <-tapped:
		if p != `{"event":"smoke_alarm"}` {
			t.Errorf("subscriber got %q", p)
		}
	case <-time.After(10 * time.Second):
		t.Error("another subscriber did not get the message")
	}

	// firewatch's own publishes are not uplink.
	if err := b.Publish("fw/v1/up/sm-1/event", []byte("own"), false, 1); err != nil {
		t.Fatal(err)
	}
	<-tapped // delivered to the tap, so the broker is done with it

	// A last will on an uplink topic, sent when the connection drops.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4, Connect: packets.ConnectParams{
		ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 30, ClientIdentifier: "gw-1",
		WillFlag: true, WillTopic: "fw/v1/up/gw/gw-1/status", WillPayload: []byte(`{"online":false}`), WillQos: 1,
	}}
	if err := pk.ConnectEncode(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(buf.Bytes()); err != nil {
		t.Fatal(err)
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil || ack[0]>>4 != packets.Connack || ack[3] != 0 {
		t.Fatalf("CONNACK %x %v", ack, err)
	}
	conn.Close()
	testenv.WaitFor(t, 10*time.Second, "the last will handled", func() bool { return len(handled()) == 2 })
	if h := handled(); h[1] != `fw/v1/up/gw/gw-1/status {"online":false}` {
		t.Errorf("handled %q", h)
	}

	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	late := dev.Publish("fw/v1/up/sm-1/event", 1, false, "late")
	if late.WaitTimeout(300 * time.Millisecond) {
		t.Errorf("a publish after Run was acknowledged (err %v)", late.Error())
	}
	if h := handled(); len(h) != 2 {
		t.Errorf("handled %q: the early, own or late message was taken", h)
	}
}
