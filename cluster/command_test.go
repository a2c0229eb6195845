package cluster

import (
	"fmt"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestClusterCommandWhileNodeDown: a linkage command (cut_power) is sent
// while the NATS node the device is connected to is dead and the device
// has not reconnected yet. The device's persistent session (clean session
// off) keeps its QoS 1 subscription in the cluster's JetStream, so the
// command reaches it when it reconnects to another node, and its
// acknowledgement reaches the uplink (issue 15, "cut_power unacked during
// NATS node kill"): 3 ms to 11 s after the send, while nats-server recovers
// the session on the new node.
func TestClusterCommandWhileNodeDown(t *testing.T) {
	nc := testenv.StartNATSCluster(t, ServerMappings(2))
	const dev = "ch-1"
	got := make(chan string, 4)
	var dc mqtt.Client
	// The device reconnects only once the command has been sent (closed).
	reconnect := make(chan struct{})
	// The device: on n2 first, then n3; persistent session, QoS 1
	// subscription to its commands, answering each.
	opts := mqtt.NewClientOptions().AddBroker(nc.Nodes[1].MQTT).AddBroker(nc.Nodes[2].MQTT).
		SetClientID(dev).SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetReconnectingHandler(func(mqtt.Client, *mqtt.ClientOptions) { <-reconnect }).
		SetOnConnectHandler(func(c mqtt.Client) {
			c.Subscribe("fw/v1/down/"+dev+"/command", 1, func(c mqtt.Client, m mqtt.Message) {
				got <- string(m.Payload())
				c.Publish("fw/v1/up/"+dev+"/ack", 1, false, `{"id":"alm-000001-cut_power","ok":true,"state":"off"}`)
			})
		})
	dc = mqtt.NewClient(opts)
	if tok := dc.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("device connect: %v", tok.Error())
	}
	defer dc.Disconnect(100)
	// The centre (firewatch's MQTT client for commands) on n1; the
	// acknowledgements seen on the mapped subject the uplink stream takes
	// (a plain NATS subscription on n1).
	cc := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(nc.Nodes[0].MQTT).SetClientID("centre").SetCleanSession(true))
	if tok := cc.Connect(); !tok.WaitTimeout(15*time.Second) || tok.Error() != nil {
		t.Fatalf("centre connect: %v", tok.Error())
	}
	defer cc.Disconnect(100)
	conn, err := nats.Connect(nc.Nodes[0].URL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	acks := make(chan string, 4)
	if _, err := conn.Subscribe(SubjectPrefix+".*.fw.v1.up."+dev+".ack", func(m *nats.Msg) { acks <- string(m.Data) }); err != nil {
		t.Fatal(err)
	}
	conn.Flush()
	send := func(id string) {
		now := time.Now().UnixMilli()
		cmd := fmt.Sprintf(`{"cmd":"cut_power","id":%q,"ch":1,"ts":%d,"exp":%d}`, id, now, now+60000)
		if tok := cc.Publish("fw/v1/down/"+dev+"/command", 1, false, cmd); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("send %s: %v", id, tok.Error())
		}
	}
	wait := func(what string, ch chan string) string {
		t.Helper()
		select {
		case s := <-ch:
			return s
		case <-time.After(30 * time.Second):
			t.Fatalf("%s: nothing within 30 s", what)
			return ""
		}
	}
	// Before the kill: command and acknowledgement go through.
	testenv.WaitFor(t, 15*time.Second, "the device's subscription", func() bool {
		send("alm-000000-cut_power")
		select {
		case <-got:
			return true
		case <-time.After(500 * time.Millisecond):
			return false
		}
	})
	wait("the first acknowledgement", acks)

	nc.Kill(1) // the device's node
	testenv.WaitFor(t, 10*time.Second, "the device disconnected", func() bool { return !dc.IsConnectionOpen() })
	sent := time.Now()
	send("alm-000001-cut_power") // while the device is disconnected and its node dead
	select {
	case c := <-got:
		t.Fatalf("the device got %s while disconnected", c)
	default:
	}
	close(reconnect)
	cmd := wait("the command sent while the device's node was dead", got)
	t.Logf("the command reached the device %v after it was sent while the device was disconnected and its node dead: %s",
		time.Since(sent).Round(time.Millisecond), cmd)
	ack := wait("its acknowledgement", acks)
	t.Logf("acknowledgement at the centre %v after the send: %s", time.Since(sent).Round(time.Millisecond), ack)
}
