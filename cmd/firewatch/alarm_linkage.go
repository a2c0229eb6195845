package main

import (
	"context"
	"errors"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// downlink publishes linkage commands (fw/v1/down/{device_id}/command) for
// the alarm manager on a client of its own, so that a slow publish never
// holds up the ingest client's delivery goroutine.
type downlink struct{ c paho.Client }

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

// publish sends one QoS 1 message and waits for the broker's PUBACK.
func (d *downlink) publish(ctx context.Context, topic string, payload []byte) error {
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
	if d != nil {
		d.c.Disconnect(250)
	}
}

// publishCommand is the alarm manager's downlink. With the embedded broker
// there is none yet: its authentication admits one client as firewatch,
// the ingest client, and the broker is not built with an inline client.
func (s *service) publishCommand(ctx context.Context, topic string, payload []byte) error {
	return s.downlink.publish(ctx, topic, payload)
}
