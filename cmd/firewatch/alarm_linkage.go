package main

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/firewatch-iot/firewatch/ingest"
)

// downlink publishes linkage commands (fw/v1/down/{device_id}/command) for
// the alarm manager: into the embedded broker directly (inline), or on a
// client of its own to an external broker, so that a slow publish never
// holds up the ingest client's delivery goroutine.
type downlink struct {
	c      paho.Client
	inline *mochi.Server
	// client publishes into inline with MQTT v5 properties (message expiry).
	client *mochi.Client
}

// newInlineDownlink publishes into the embedded broker s.
func newInlineDownlink(s *mochi.Server) *downlink {
	return &downlink{inline: s, client: s.NewClient(nil, mochi.LocalListener, "firewatch-downlink", true)}
}

var errCommandExpired = errors.New("command expired before it was published")

// newDownlink connects to the external broker of sc with a client of its
// own, client id sc.ClientID+"-downlink".
func newDownlink(sc ingest.SourceConfig) *downlink {
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker(sc.Broker).
		SetClientID(sc.ClientID + "-downlink").
		SetUsername(sc.Username).
		SetPassword(sc.Password).
		SetCleanSession(true).
		SetAutoReconnect(true).
		SetConnectRetry(true).
		SetConnectRetryInterval(time.Second).
		SetMaxReconnectInterval(5 * time.Second))
	c.Connect() // with ConnectRetry it keeps trying in the background
	return &downlink{c: c}
}

var errNoDownlink = errors.New("MQTT downlink not connected")

// publish sends one QoS 1 message and waits for the broker's PUBACK (an
// inline publish is in the embedded broker when it returns).
func (d *downlink) publish(ctx context.Context, topic string, payload []byte) error {
	if d != nil && d.inline != nil {
		pk := packets.Packet{
			FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1},
			TopicName:   topic, Payload: payload, PacketID: 1,
		}
		// A command's exp (docs/mqtt.md) becomes its MQTT message expiry,
		// so that the broker drops it, rather than deliver it late, for a
		// subscriber that is away (the broker also caps every message at
		// broker.MaxMessageExpiry).
		var c struct {
			Exp int64 `json:"exp"`
		}
		if json.Unmarshal(payload, &c) == nil && c.Exp > 0 {
			left := time.Until(time.UnixMilli(c.Exp))
			if left <= 0 {
				return errCommandExpired
			}
			pk.Properties.MessageExpiryInterval = uint32((left + time.Second - 1) / time.Second)
		}
		return d.inline.InjectPacket(d.client, pk)
	}
	if d == nil || !d.c.IsConnectionOpen() {
		return errNoDownlink
	}
	tok := d.c.Publish(topic, 1, false, payload)
	select {
	case <-tok.Done():
		return tok.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (d *downlink) close() {
	if d != nil && d.c != nil {
		d.c.Disconnect(250)
	}
}

// publishCommand is the alarm manager's downlink.
func (s *service) publishCommand(ctx context.Context, topic string, payload []byte) error {
	return s.downlink.publish(ctx, topic, payload)
}
