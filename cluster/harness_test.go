package cluster

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// mqttPublisher connects a clean-session MQTT client (no automatic
// reconnect) to a NATS node's MQTT listener and returns it once the node
// has acknowledged one QoS 1 message, a probe on a topic outside the
// uplink, so that a test's load does not meet the start of the node's MQTT
// layer: under CI's load nats-server left a new cluster's first QoS 1
// publish without its JetStream acknowledgement for its 5 s and closed the
// connection ("JetStream failed a pipelined QoS1/2 operation … no
// JetStream ack within 5s"; TestClusterKillSoonAfterJoin's publisher
// stopped there). A failed probe is tried again on a fresh connection, for
// up to 60 s. The client is disconnected when the test ends.
func mqttPublisher(t *testing.T, url, clientID string) mqtt.Client {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(clientID).
			SetCleanSession(true).SetAutoReconnect(false))
		err := errTimeout
		if tok := c.Connect(); tok.WaitTimeout(10 * time.Second) {
			err = tok.Error()
		}
		if err == nil {
			err = errTimeout
			if p := c.Publish("fwtest/probe/"+clientID, 1, false, "probe"); p.WaitTimeout(10 * time.Second) {
				err = p.Error()
			}
			if err == nil {
				t.Cleanup(func() { c.Disconnect(100) })
				return c
			}
		}
		c.Disconnect(0)
		if time.Now().After(deadline) {
			t.Fatalf("mqtt publisher %s at %s: no QoS 1 message acknowledged within 60 s: %v", clientID, url, err)
		}
		t.Logf("mqtt publisher %s at %s: %v; trying again", clientID, url, err)
		time.Sleep(200 * time.Millisecond) // a retry's pace, not synchronisation
	}
}

var errTimeout = errors.New("timed out")

// runSource runs s until ctx ends and returns, once s is ready, the channel
// that gets Run's result; it fails the test if Run ends first or s is not
// ready within 60 s.
func runSource(tb testing.TB, ctx context.Context, s *Source, name string) <-chan error {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-done:
		tb.Fatalf("source %s: %v", name, err)
	case <-time.After(60 * time.Second):
		tb.Fatalf("source %s not ready within 60 s", name)
	}
	return done
}

// twoPerPartition returns smoke detectors' ids, "sm-000" on, two in each of
// the parts partitions.
func twoPerPartition(parts int) []string {
	var devs []string
	per := map[int]int{}
	for i := 0; len(devs) < 2*parts; i++ {
		id := fmt.Sprintf("sm-%03d", i)
		if p := PartitionOf(id, parts); per[p] < 2 {
			per[p]++
			devs = append(devs, id)
		}
	}
	return devs
}
