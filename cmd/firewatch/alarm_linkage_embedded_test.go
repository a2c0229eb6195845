package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// With the embedded broker, linkage commands go out through its inline
// client and reach the device subscribed to its downlink.
func TestEmbeddedDownlink(t *testing.T) {
	port := testenv.FreePort(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, "http://127.0.0.1:1")
	cfg.MQTT.Listen = "127.0.0.1:" + strconv.Itoa(port)
	cfg.MQTT.Auth = "none" // the cabinet below connects without a secret
	cfg.HTTP.Listen = "127.0.0.1:0"
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = "s"
	s, err := newService(&cfg, discardLogger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)

	got := make(chan string, 1)
	c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + cfg.MQTT.Listen).SetClientID("ch-1"))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	tok := c.Subscribe("fw/v1/down/ch-1/command", 1, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) })
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// An inline subscriber sees the MQTT v5 message expiry the broker
	// holds the command with: the time left until exp.
	expiry := make(chan uint32, 1)
	if err := s.broker.Subscribe("fw/v1/down/ch-1/command", 1, func(_ *mochi.Client, _ packets.Subscription, pk packets.Packet) {
		expiry <- pk.Properties.MessageExpiryInterval
	}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A command past its exp is not published at all.
	now := time.Now().UnixMilli()
	stale := fmt.Sprintf(`{"cmd":"cut_power","id":"k0","ch":3,"ts":%d,"exp":%d}`, now-120_000, now-60_000)
	if err := s.publishCommand(ctx, "fw/v1/down/ch-1/command", []byte(stale)); !errors.Is(err, errCommandExpired) {
		t.Fatalf("publish of an expired command: %v", err)
	}
	want := fmt.Sprintf(`{"cmd":"cut_power","id":"k1","ch":3,"ts":%d,"exp":%d}`, now, now+60_000)
	if err := s.publishCommand(ctx, "fw/v1/down/ch-1/command", []byte(want)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	select {
	case p := <-got:
		if p != want {
			t.Fatalf("cabinet got %s, want %s", p, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not reach the cabinet")
	}
	if e := <-expiry; e < 55 || e > 60 {
		t.Errorf("message expiry %d s, want the minute left until exp", e)
	}
}
