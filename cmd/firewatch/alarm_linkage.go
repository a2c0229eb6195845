package main

import (
	"context"
	"errors"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
)

// downlink publishes linkage commands (fw/v1/down/{device_id}/command) for
// the alarm manager: into the embedded broker directly (inline), or on a
// client of its own to an external broker, so that a slow publish never
// holds up the ingest client's delivery goroutine.
type downlink struct {
	c      paho.Client
	inline *mochi.Server
}

func newDownlink(broker, clientID, username, password string) *downlink {
	c := paho.NewClient(paho.NewClientOptions().
		AddBroker(broker).
		SetClientID(clientID).
		SetUsername(username).
		SetPassword(password).
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
		return d.inline.Publish(topic, payload, false, 1)
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
