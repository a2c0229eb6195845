package cluster

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/pipeline"
)

func TestForwardSubject(t *testing.T) {
	for _, c := range []struct{ topic, want string }{
		{"fw/v1/up/sm-1/event", fmt.Sprintf("$MQTT.msgs.fwp.%d.fw.v1.up.sm-1.event", PartitionOf("sm-1", 16))},
		{"fw/v1/up/el.450204.7/telemetry", fmt.Sprintf("$MQTT.msgs.fwp.%d.fw.v1.up.el//450204//7.telemetry", PartitionOf("el.450204.7", 16))},
		{"fw/v1/up/gw/gw-3/status", fmt.Sprintf("$MQTT.msgs.fwp.%d.fw.v1.up.gw.gw-3.status", PartitionOf("gw-3", 16))},
		{"fw/v1/down/sm-1/command", ""},
		{"fw/v1/up/sm-1", ""},
		{"fw/v1/up//event", ""},
		{"fw/v1/up/a*/event", ""},
		{"fw/v1/up/a/b/c/d", ""},
	} {
		got, err := ForwardSubject(c.topic, 16)
		if got != c.want || (err == nil) != (c.want != "") {
			t.Errorf("ForwardSubject(%q) = %q, %v; want %q", c.topic, got, err, c.want)
		}
		if err == nil {
			// What the owner makes of it: the same topic, in the partition.
			topic, n, ok := TopicOf(strings.TrimPrefix(got, mqttPrefix))
			if !ok || topic != c.topic {
				t.Errorf("TopicOf(%q) = %q, %d, %v", got, topic, n, ok)
			}
		}
	}
}

// msgRecorder is a pipeline.Taker that keeps every message it took.
type msgRecorder struct {
	mu   sync.Mutex
	msgs []pipeline.Message
}

func (r *msgRecorder) Take(m pipeline.Message) error {
	c := m
	c.Payload = append([]byte(nil), m.Payload...)
	c.Ack = nil
	r.mu.Lock()
	r.msgs = append(r.msgs, c)
	r.mu.Unlock()
	if m.Ack != nil {
		m.Ack()
	}
	return nil
}

// of returns the messages taken whose topic has the prefix.
func (r *msgRecorder) of(prefix string) []pipeline.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pipeline.Message
	for _, m := range r.msgs {
		if strings.HasPrefix(m.Topic, prefix) {
			out = append(out, m)
		}
	}
	return out
}

// TestClusterForward runs two instances on a real 3-node NATS cluster, each
// owning half of the partitions. A device of a partition a owns publishes
// over MQTT; between its messages, b — which the device's NB-IoT platform
// pushes and its UITD's frames reach — forwards messages of the same
// device. a takes all of them, in the order they were acknowledged, with
// the origin and the relayed mark of the forwarded ones; b evaluates none.
// When no NATS node is reachable, Forward fails (the sender is refused).
func TestClusterForward(t *testing.T) { testClusterForward(t, false) }

// TestClusterForwardCallout is TestClusterForward on nodes configured for
// the auth callout (docs/cluster.md, "Credentials"): the instances and the
// forwarder connect as the service user, which may publish into the MQTT
// message stream of the devices' account.
func TestClusterForwardCallout(t *testing.T) { testClusterForward(t, true) }

func testClusterForward(t *testing.T, callout bool) {
	const parts = 4
	var opts []testenv.NATSOption
	if callout {
		opts = append(opts, testenv.WithAuthCallout())
	}
	nc := testenv.StartNATSCluster(t, ServerMappings(parts), opts...)
	config := func(name string) Config {
		c := testConfig(nc.URLs(), parts, name)
		if callout {
			c.User, c.Password = nc.Callout.User, nc.Callout.Password
		}
		return c
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(name string, r pipeline.Taker) *Source {
		s := NewSource(config(name), r, nil, nil, quiet())
		runSource(t, ctx, s, name)
		return s
	}
	opt := mqtt.NewClientOptions().AddBroker(nc.Nodes[2].MQTT).SetClientID("pub").SetCleanSession(true)
	if callout {
		opt.SetClientID(nc.Callout.User).SetUsername(nc.Callout.User).SetPassword(nc.Callout.Password)
	}
	pub := mqtt.NewClient(opt)
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	// A partition is owned from its first message on: a device in each
	// speaks every 50 ms.
	var ticks []string
	for i := 0; len(ticks) < parts; i++ {
		if id := fmt.Sprintf("tick-%d", i); PartitionOf(id, parts) == len(ticks) {
			ticks = append(ticks, "fw/v1/up/"+id+"/status")
		} else if i > 10000 {
			t.Fatal("no device id for every partition")
		}
	}
	stop := make(chan struct{})
	var ticking sync.WaitGroup
	defer func() { close(stop); ticking.Wait() }()
	ticking.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, topic := range ticks {
				pub.Publish(topic, 1, false, `{}`).WaitTimeout(2 * time.Second)
			}
		}
	})
	ra, rb := &msgRecorder{}, &msgRecorder{}
	a := start("a", ra)
	testenv.WaitFor(t, 30*time.Second, "a owning every partition", func() bool { return len(a.Owned()) == parts })
	b := start("b", rb)
	testenv.WaitFor(t, 30*time.Second, "the partitions shared", func() bool {
		return len(a.Owned()) == parts/2 && len(b.Owned()) == parts/2
	})
	fb, err := NewForwarder(config("b"), nil, quiet())
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()

	// A device of one of a's partitions (a '.' in its id, as the
	// electrical detectors' ids have).
	owned := map[int]bool{}
	for _, n := range a.Owned() {
		owned[n] = true
	}
	dev := ""
	for i := 0; dev == ""; i++ {
		if id := fmt.Sprintf("nb.%d", i); owned[PartitionOf(id, parts)] {
			dev = id
		}
	}
	topic := "fw/v1/up/" + dev + "/event"
	type step struct {
		origin  pipeline.Origin // "" : over MQTT
		relayed bool
	}
	steps := []step{{}, {"nbiot", true}, {}, {"gb26875", false}, {"gb26875", false}, {}, {"nbiot", true}}
	for seq, s := range steps {
		payload := fmt.Sprintf(`{"seq":%d}`, seq)
		if s.origin == "" {
			if tok := pub.Publish(topic, 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("publish: %v", tok.Error())
			}
			continue
		}
		if err := fb.Forward(s.origin, s.relayed, topic, []byte(payload)); err != nil {
			t.Fatalf("forward seq %d: %v", seq, err)
		}
	}
	// A gateway's topic goes to the gateway's partition.
	if err := fb.Forward("gb26875", false, "fw/v1/up/gw/gw-3/status", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 30*time.Second, "every message of the device taken", func() bool {
		return len(ra.of(topic))+len(rb.of(topic)) >= len(steps)
	})
	if got := rb.of(topic); len(got) > 0 {
		t.Errorf("b, not the owner, evaluated %d messages of %s", len(got), dev)
	}
	got := ra.of(topic)
	for i, m := range got {
		var seq int
		fmt.Sscanf(string(m.Payload), `{"seq":%d}`, &seq)
		if seq != i {
			t.Errorf("message %d taken by the owner is seq %d (out of order)", i, seq)
			continue
		}
		want := steps[i]
		if want.origin == "" {
			want.origin = Origin
		}
		if m.Origin != want.origin || m.Relayed != want.relayed {
			t.Errorf("seq %d: origin %q relayed %v, want %q %v", seq, m.Origin, m.Relayed, want.origin, want.relayed)
		}
	}
	gwOwner := ra
	if !owned[PartitionOf("gw-3", parts)] {
		gwOwner = rb
	}
	testenv.WaitFor(t, 30*time.Second, "the gateway's status taken by its partition's owner", func() bool {
		return len(gwOwner.of("fw/v1/up/gw/gw-3/status")) == 1
	})

	// The node the forwarder is connected to dies (SIGKILL): the forwarder
	// reconnects to another and a forward goes through, at the latest when
	// the sender retries (as a platform or a UITD does after a refusal);
	// the message reaches the stream.
	killed := -1
	for i, n := range nc.Nodes {
		if n.URL == fb.nc.ConnectedUrl() {
			killed = i
		}
	}
	if killed < 0 {
		t.Fatalf("forwarder connected to %q, not a node", fb.nc.ConnectedUrl())
	}
	nc.Kill(killed)
	began := time.Now()
	const afterKill = `{"seq":50}`
	for attempt := 1; ; attempt++ {
		err := fb.Forward("nbiot", true, topic, []byte(afterKill))
		if err == nil {
			t.Logf("node %s killed: forwarded after %v (attempt %d)", nc.Nodes[killed].Name, time.Since(began).Round(time.Millisecond), attempt)
			break
		}
		// If the node led the MQTT message stream, nothing is stored until
		// the survivors elect a leader: 5–11 s, up to 18 s seen
		// (docs/cluster.md, "A NATS node killed").
		if time.Since(began) > 40*time.Second {
			t.Fatalf("node %s killed: %d forwards refused within 40 s, the last: %v", nc.Nodes[killed].Name, attempt, err)
		}
		t.Logf("node %s killed: forward refused (the sender retries): %v", nc.Nodes[killed].Name, err)
	}
	testenv.WaitFor(t, 30*time.Second, "the message forwarded after the node's death taken", func() bool {
		for _, r := range []*msgRecorder{ra, rb} {
			for _, m := range r.of(topic) {
				if string(m.Payload) == afterKill {
					return true
				}
			}
		}
		return false
	})

	// No node reachable: refused within the forward timeout, not answered.
	close(stop)
	ticking.Wait()
	stop = make(chan struct{})
	for i := range nc.Nodes {
		if i != killed {
			nc.Kill(i)
		}
	}
	began = time.Now()
	if err := fb.Forward("nbiot", true, topic, []byte(`{"seq":99}`)); err == nil {
		t.Fatal("Forward succeeded with every NATS node down")
	} else {
		t.Logf("with every node down: %v after %v", err, time.Since(began).Round(time.Millisecond))
	}
	if d := time.Since(began); d > forwardTimeout+2*time.Second {
		t.Errorf("Forward took %v to fail", d)
	}
}

// BenchmarkForward measures one Forward (publish into the MQTT message
// stream, R3, and its PubAck) on a real 3-node NATS cluster on loopback:
// the latency an NB-IoT push or a GB/T 26875.3 message gains in cluster
// mode before its answer.
func BenchmarkForward(b *testing.B) {
	const parts = 4
	nc := testenv.StartNATSCluster(b, ServerMappings(parts))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewSource(testConfig(nc.URLs(), parts, "a"), &msgRecorder{}, nil, nil, quiet())
	runSource(b, ctx, s, "a")
	f, err := NewForwarder(testConfig(nc.URLs(), parts, "b"), nil, quiet())
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	payload := []byte(`{"ts":1796118000000,"m":{"smoke":1,"battery_pct":87}}`)
	for try := 0; f.Forward("nbiot", true, "fw/v1/up/sm-nb-1/telemetry", payload) != nil; try++ {
		if try == 5 { // the forwarder's connection may still be being made
			b.Fatal("no forward went through")
		}
	}
	for i := 0; b.Loop(); i++ {
		if err := f.Forward("nbiot", true, fmt.Sprintf("fw/v1/up/sm-nb-%d/telemetry", i%64), payload); err != nil {
			b.Fatal(err)
		}
	}
}
