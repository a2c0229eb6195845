package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/broker"
	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

func TestSubjects(t *testing.T) {
	got := Subjects([]string{"fw/v1/up/sm-1/event", "fw/v1/down/el.45.1/#", "fw/v1/up/+/ack"})
	want := []string{"fw.v1.up.sm-1.event", "fw.v1.down.el//45//1.>", "fw.v1.down.el//45//1", "fw.v1.up.*.ack"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Subjects = %q, want %q", got, want)
	}
	got = Partitioned([]string{"fw.v1.up.sm-1.event", "fw.v1.up.gw.gw-3.batch", "fw.v1.up.*.ack", "fw.v1.down.sm-1.>"}, 16)
	want = []string{fmt.Sprintf("fwp.%d.fw.v1.up.sm-1.event", PartitionOf("sm-1", 16)),
		fmt.Sprintf("fwp.%d.fw.v1.up.gw.gw-3.batch", PartitionOf("gw-3", 16)), "fwp.*.fw.v1.up.*.ack"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Partitioned = %q, want %q", got, want)
	}
}

// calloutFleet is the registry of TestClusterCallout: two smoke detectors
// with secrets, a gateway and a monitor behind it.
func calloutFleet(t *testing.T) *devices.Live {
	t.Helper()
	live := devices.NewLive(&devices.Ledger{})
	if _, _, err := live.Apply(&devices.Change{
		UpsertStations: []devices.StationEntry{{ID: "st-1", Name: "站", Grids: []string{"450204002003"}, Endpoint: "http://127.0.0.1:1/"}},
		UpsertGateways: []devices.GatewayEntry{{ID: "gw-1", SecretHash: hashSecret(t, "gw1-secret")}},
		UpsertDevices: []devices.DeviceEntry{
			{ID: "sm-1", Kind: "smoke", Grid: "450204002003", SecretHash: hashSecret(t, "sm1-secret")},
			{ID: "sm-2", Kind: "smoke", Grid: "450204002003", SecretHash: hashSecret(t, "sm2-secret")},
			{ID: "el-5", Kind: "electrical", Grid: "450204002003", Gateway: "gw-1"},
		},
	}); err != nil {
		t.Fatal(err)
	}
	return live
}

func hashSecret(t *testing.T, s string) string {
	t.Helper()
	h, err := broker.HashSecret([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// mqttDial connects an MQTT 3.1.1 client (client id = user) to url.
func mqttDial(url, user, pass string) (mqtt.Client, error) {
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(url).SetClientID(user).SetUsername(user).SetPassword(pass).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetConnectTimeout(5 * time.Second))
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	return c, nil
}

func publish(c mqtt.Client, topic string) error {
	tok := c.Publish(topic, 1, false, `{}`)
	if !tok.WaitTimeout(5 * time.Second) {
		return errors.New("no PUBACK within 5 s")
	}
	return tok.Error()
}

// TestClusterCallout runs the auth callout against a real 3-node NATS
// cluster whose nodes hand every MQTT CONNECT to it: a device connects
// with its secret on any node and its uplink reaches the stream's
// consumer; a wrong secret is refused at CONNACK (and counted); a publish
// on another device's topic is not delivered, nor a subscription to
// another's downlink granted; a device added to the live registry
// connects at once, one removed is refused at its next CONNECT.
func TestClusterCallout(t *testing.T) {
	const parts = 4
	nc := testenv.StartNATSCluster(t, ServerMappings(parts), testenv.WithAuthCallout())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	live := calloutFleet(t)
	reg := prometheus.NewRegistry()
	auth, err := broker.NewAuth(broker.AuthConfig{Ledger: live.Load(), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	auth.FollowLive(live, nil)
	cfg := testConfig(nc.URLs(), parts, "a")
	cfg.User, cfg.Password = nc.Callout.User, nc.Callout.Password
	cfg.CalloutSeed, cfg.CalloutAccount = nc.Callout.SeedFile, nc.Callout.Account
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	co, err := NewCallout(cfg, func(user, clientID, remote string, password []byte) ([]string, []string, error) {
		g, err := auth.Authorize(user, clientID, remote, password)
		return g.Publish, g.Subscribe, err
	}, reg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if co.Issuer() != nc.Callout.Issuer {
		t.Fatalf("issuer %s, servers expect %s", co.Issuer(), nc.Callout.Issuer)
	}
	rec := newRecorder()
	src := NewSource(cfg, rec, nil, nil, quiet())
	src.Authorize(co)
	srcDone := make(chan error, 1)
	go func() { srcDone <- src.Run(ctx) }()
	for _, ready := range []<-chan struct{}{co.Ready(), src.Ready()} {
		select {
		case <-ready:
		case err := <-srcDone:
			t.Fatalf("source: %v", err)
		case <-time.After(60 * time.Second):
			t.Fatal("callout or source not ready within 60 s")
		}
	}

	// The device on every node (the callout's queue subscription reaches
	// the other nodes over the routes).
	for i, n := range nc.Nodes {
		var c mqtt.Client
		testenv.WaitFor(t, 10*time.Second, "sm-1 connects to "+n.Name, func() bool {
			c, err = mqttDial(n.MQTT, "sm-1", "sm1-secret")
			return err == nil
		})
		if err := publish(c, "fw/v1/up/sm-1/status"); err != nil {
			t.Fatalf("node %d: own topic: %v", i, err)
		}
		c.Disconnect(0)
	}
	testenv.WaitFor(t, 10*time.Second, "sm-1's status in the stream", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seqs["fw/v1/up/sm-1/status"]) == len(nc.Nodes)
	})

	// A wrong secret, an unknown user, a client id that is not the user.
	if c, err := mqttDial(nc.Nodes[0].MQTT, "sm-2", "sm1-secret"); err == nil {
		c.Disconnect(0)
		t.Fatal("sm-2 connected with sm-1's secret")
	} else {
		t.Logf("wrong secret: %v", err)
	}
	// The same by hand (MQTT 3.1.1 §3.1, §3.2): CONNACK return code 5,
	// not authorized, then the server closes the connection.
	if rc, err := rawConnect(nc.Nodes[1].MQTT, "sm-2", "wrong"); err != nil || rc != 5 {
		t.Errorf("wrong secret: CONNACK return code %d, %v; want 5", rc, err)
	}
	if rc, err := rawConnect(nc.Nodes[1].MQTT, "sm-2", "sm2-secret"); err != nil || rc != 0 {
		t.Errorf("right secret: CONNACK return code %d, %v; want 0", rc, err)
	}
	if c, err := mqttDial(nc.Nodes[1].MQTT, "sm-9", "x"); err == nil {
		c.Disconnect(0)
		t.Fatal("unknown device connected")
	}
	if denied := counter(t, reg, "firewatch_broker_denied_total", "bad_secret"); denied < 1 {
		t.Errorf("bad_secret refusals counted: %v", denied)
	}
	if denied := counter(t, reg, "firewatch_broker_denied_total", "unknown_user"); denied < 1 {
		t.Errorf("unknown_user refusals counted: %v", denied)
	}

	// Another device's topic: watched on the mapped subjects of the
	// device's node, where its own later publish arrives after it.
	watch, err := nats.Connect(nc.Nodes[2].URL, nats.UserInfo(nc.Callout.User, nc.Callout.Password))
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	seen := make(chan *nats.Msg, 16)
	if _, err := watch.ChanSubscribe(SubjectPrefix+".>", seen); err != nil {
		t.Fatal(err)
	}
	watch.Flush()
	sm1, err := mqttDial(nc.Nodes[2].MQTT, "sm-1", "sm1-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer sm1.Disconnect(0)
	forged := publish(sm1, "fw/v1/up/sm-2/event")
	t.Logf("publish on sm-2's topic: %v (connected afterwards: %v)", forged, sm1.IsConnectionOpen())
	if !sm1.IsConnectionOpen() {
		if sm1, err = mqttDial(nc.Nodes[2].MQTT, "sm-1", "sm1-secret"); err != nil {
			t.Fatal(err)
		}
		defer sm1.Disconnect(0)
	}
	if err := publish(sm1, "fw/v1/up/sm-1/event"); err != nil {
		t.Fatal(err)
	}
	for m := range seen {
		if strings.Contains(m.Subject, "sm-2") {
			t.Fatalf("sm-1's publish on sm-2's topic delivered: %s", m.Subject)
		}
		if strings.HasSuffix(m.Subject, ".sm-1.event") {
			break
		}
	}
	// Downlink: its own, not another's.
	tok := sm1.Subscribe("fw/v1/down/sm-2/#", 1, nil)
	if tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if q := tok.(*mqtt.SubscribeToken).Result()["fw/v1/down/sm-2/#"]; q != 0x80 {
			t.Errorf("subscription to sm-2's downlink granted with QoS %d", q)
		}
	}
	if !sm1.IsConnectionOpen() {
		if sm1, err = mqttDial(nc.Nodes[2].MQTT, "sm-1", "sm1-secret"); err != nil {
			t.Fatal(err)
		}
		defer sm1.Disconnect(0)
	}
	cmds := make(chan string, 4)
	tok = sm1.Subscribe("fw/v1/down/sm-1/#", 1, func(_ mqtt.Client, m mqtt.Message) { cmds <- m.Topic() })
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil || tok.(*mqtt.SubscribeToken).Result()["fw/v1/down/sm-1/#"] == 0x80 {
		t.Fatalf("subscription to its own downlink: %v %v", tok.Error(), tok.(*mqtt.SubscribeToken).Result())
	}
	svc, err := mqttDial(nc.Nodes[0].MQTT, nc.Callout.User, nc.Callout.Password)
	if err != nil {
		t.Fatalf("service user over MQTT: %v", err)
	}
	defer svc.Disconnect(0)
	testenv.WaitFor(t, 10*time.Second, "a command reaches sm-1", func() bool {
		if err := publish(svc, "fw/v1/down/sm-1/command"); err != nil {
			t.Fatal(err)
		}
		select {
		case <-cmds:
			return true
		case <-time.After(200 * time.Millisecond):
			return false
		}
	})

	// The gateway: its batches and its device's acknowledgements.
	gw, err := mqttDial(nc.Nodes[1].MQTT, "gw-1", "gw1-secret")
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Disconnect(0)
	for _, topic := range []string{"fw/v1/up/gw/gw-1/batch", "fw/v1/up/el-5/ack"} {
		if err := publish(gw, topic); err != nil {
			t.Fatalf("gateway %s: %v", topic, err)
		}
	}
	testenv.WaitFor(t, 10*time.Second, "the gateway's messages in the stream", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seqs["fw/v1/up/gw/gw-1/batch"]) == 1 && len(rec.seqs["fw/v1/up/el-5/ack"]) == 1
	})

	// Live registry: a device added connects at once; one removed is
	// refused at its next CONNECT.
	if _, _, err := live.Apply(&devices.Change{
		UpsertDevices: []devices.DeviceEntry{{ID: "sm-3", Kind: "smoke", Grid: "450204002003", SecretHash: hashSecret(t, "sm3-secret")}},
		DeleteDevices: []string{"sm-1"},
	}); err != nil {
		t.Fatal(err)
	}
	sm3, err := mqttDial(nc.Nodes[0].MQTT, "sm-3", "sm3-secret")
	if err != nil {
		t.Fatalf("device added to the registry: %v", err)
	}
	if err := publish(sm3, "fw/v1/up/sm-3/event"); err != nil {
		t.Fatal(err)
	}
	sm3.Disconnect(0)
	if c, err := mqttDial(nc.Nodes[1].MQTT, "sm-1", "sm1-secret"); err == nil {
		c.Disconnect(0)
		t.Fatal("device removed from the registry connected")
	}
	testenv.WaitFor(t, 10*time.Second, "sm-3's event in the stream", func() bool {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		return len(rec.seqs["fw/v1/up/sm-3/event"]) == 1
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	for topic := range rec.seqs {
		if strings.Contains(topic, "sm-2") {
			t.Errorf("forged message in the stream: %s", topic)
		}
	}
}

// counter returns the value of counter name with label reason in reg.
func counter(t *testing.T, reg *prometheus.Registry, name, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// rawConnect sends a hand-written MQTT 3.1.1 CONNECT (clean session, user
// name and password, client id = user, keep-alive 10 s) to url and returns
// the CONNACK's return code.
func rawConnect(url, user, pass string) (byte, error) {
	conn, err := net.DialTimeout("tcp", strings.TrimPrefix(url, "tcp://"), 2*time.Second)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	body := []byte{0x00, 0x04, 'M', 'Q', 'T', 'T', 0x04, 0xc2, 0x00, 0x0a}
	for _, f := range []string{user, user, pass} {
		body = append(body, byte(len(f)>>8), byte(len(f)))
		body = append(body, f...)
	}
	if _, err := conn.Write(append([]byte{0x10, byte(len(body))}, body...)); err != nil {
		return 0, err
	}
	ack := make([]byte, 4)
	if _, err := io.ReadFull(conn, ack); err != nil {
		return 0, err
	}
	if ack[0] != 0x20 || ack[1] != 0x02 {
		return 0, fmt.Errorf("not a CONNACK: % x", ack)
	}
	return ack[3], nil
}
