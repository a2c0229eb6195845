package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// willBroker is the embedded broker with the ledger's ACL and an
// InlineSource recording what firewatch would take.
type willBroker struct {
	url     string
	secrets map[string]string
	mu      sync.Mutex
	handled []string
}

func (b *willBroker) taken() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.handled)
}

func startWillBroker(t *testing.T) *willBroker {
	l, secrets := authLedger(t)
	a, err := NewAuth(AuthConfig{Ledger: l, ServicePassword: "svc", ServiceClientID: "firewatch", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	b := &willBroker{secrets: secrets}
	src := NewInlineSource(func(topic string, payload []byte) {
		b.mu.Lock()
		b.handled = append(b.handled, topic+" "+string(payload))
		b.mu.Unlock()
	})
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := Start(Config{Addr: addr, Auth: a, Hooks: []mochi.Hook{src}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go src.Run(ctx)
	<-src.Ready()
	t.Cleanup(func() { cancel(); s.Close() })
	b.url = "tcp://" + addr
	return b
}

// connect connects a paho client with a last will (if willTopic is set)
// and returns it with its TCP connection, which the test may drop without
// a DISCONNECT so that the broker sends the will.
func (b *willBroker) connect(user, willTopic, will string, retain bool) (paho.Client, net.Conn, error) {
	var conn net.Conn
	o := paho.NewClientOptions().AddBroker(b.url).SetClientID(user).SetUsername(user).SetPassword(b.secrets[user]).
		SetAutoReconnect(false).SetConnectTimeout(5 * time.Second).
		SetCustomOpenConnectionFn(func(u *url.URL, _ paho.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", u.Host)
			conn = c
			return c, err
		})
	if user == ServiceUser {
		o.SetClientID("firewatch").SetPassword("svc")
	}
	if willTopic != "" {
		o.SetWill(willTopic, will, 1, retain)
	}
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, nil, fmt.Errorf("connect timed out")
	}
	return c, conn, tok.Error()
}

type delivery struct {
	topic    string
	retained bool
}

// TestWillACL: a client's last will gets the publish ACL at CONNECT. A
// device with its own valid secret cannot leave a will on another device's
// event or ack topic, nor on any downlink (retained or not); a gateway
// cannot on a device that is not its own; and the broker retains nothing,
// so no stale or forged message is replayed to a new subscriber. A will on
// the client's own topic still works, with retain set (firegate's status
// will) or not.
func TestWillACL(t *testing.T) {
	b := startWillBroker(t)
	tap, _, err := b.connect(ServiceUser, "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer tap.Disconnect(0)
	tapped := make(chan delivery, 100)
	sub := func(c paho.Client, ch chan delivery) {
		tok := c.Subscribe("fw/v1/#", 1, func(_ paho.Client, m paho.Message) { ch <- delivery{m.Topic(), m.Retained()} })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatal("subscribe", tok.Error())
		}
	}
	sub(tap, tapped)

	for _, c := range []struct{ user, topic, payload string }{
		{"el-1", "fw/v1/up/sm-1/event", `{"event":"smoke_alarm"}`},               // forged fire alarm next door
		{"el-1", "fw/v1/up/sm-1/ack", `{"id":"alm-000001-cut_power","ok":true}`}, // forged acknowledgement
		{"el-1", "fw/v1/down/el-1/command", `{"cmd":"cut_power","id":"x"}`},      // a device publishes no downlink
		{"gw-1", "fw/v1/down/hy-1/command", `{"cmd":"cut_power","id":"x"}`},      // nor does a gateway
		{"gw-2", "fw/v1/up/hy-1/ack", `{"id":"x","ok":true}`},                    // hy-1 belongs to gw-1
		{"gw-2", "fw/v1/up/gw/gw-1/status", `{"online":false}`},                  // another gateway's status
	} {
		for _, retain := range []bool{false, true} {
			cl, conn, err := b.connect(c.user, c.topic, c.payload, retain)
			if err == nil {
				t.Errorf("%s connected with a will on %s (retain %v)", c.user, c.topic, retain)
				conn.Close() // drop TCP: the broker sends the will
				cl.Disconnect(0)
			}
		}
	}

	// Retain is off: a device's retained publish on its own topic is
	// delivered (and taken), but not kept.
	el, _, err := b.connect("el-1", "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	if tok := el.Publish("fw/v1/up/el-1/telemetry", 1, true, `{"m":{"voltage_v":220}}`); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("publish", tok.Error())
	}
	el.Disconnect(0)

	// A gateway's own status will, retained as firegate sets it, connects
	// and is sent when the gateway drops its connection.
	gw, conn, err := b.connect("gw-1", "fw/v1/up/gw/gw-1/status", `{"online":false}`, true)
	if err != nil {
		t.Fatalf("gateway with its own status will: %v", err)
	}
	conn.Close()
	defer gw.Disconnect(0)
	testenv.WaitFor(t, 10*time.Second, "the gateway's will", func() bool {
		return slices.Contains(b.taken(), `fw/v1/up/gw/gw-1/status {"online":false}`)
	})
	want := []string{`fw/v1/up/el-1/telemetry {"m":{"voltage_v":220}}`, `fw/v1/up/gw/gw-1/status {"online":false}`}
	if got := b.taken(); !slices.Equal(got, want) {
		t.Errorf("firewatch took %q, want %q", got, want)
	}

	// Everything the first subscriber got is in its channel once the
	// marker it publishes comes back (delivered in order).
	if tok := tap.Publish("fw/v1/alarms/marker", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("marker", tok.Error())
	}
	for {
		d := <-tapped
		if d.topic == "fw/v1/alarms/marker" {
			break
		}
		switch d.topic {
		case "fw/v1/up/el-1/telemetry", "fw/v1/up/gw/gw-1/status":
		default:
			t.Errorf("delivered %s", d.topic)
		}
	}
	// A new subscriber gets no retained message: the marker published after
	// it subscribed is the first thing it receives.
	tap.Disconnect(100) // the service has one client id
	late, _, err := b.connect(ServiceUser, "", "", false)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Disconnect(0)
	lateGot := make(chan delivery, 100)
	sub(late, lateGot)
	if tok := late.Publish("fw/v1/alarms/marker", 1, false, "x"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("marker", tok.Error())
	}
	timeout := time.After(10 * time.Second)
wait:
	for {
		select {
		case d := <-lateGot:
			if d.topic == "fw/v1/alarms/marker" {
				break wait
			}
			t.Errorf("new subscriber got %s (retained %v) before the marker", d.topic, d.retained)
		case <-timeout:
			t.Fatal("marker not delivered")
		}
	}
}

// TestBrokerMessageExpiry: a QoS 1 command for a device that is away (a
// persistent session) is dropped by the broker once older than the cap,
// not delivered when the device returns.
func TestBrokerMessageExpiry(t *testing.T) {
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s, err := Start(Config{Addr: addr, MaxMessageExpiry: 2 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	got := make(chan string, 10)
	connect := func() paho.Client {
		c := paho.NewClient(paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("ch-1").SetCleanSession(false).
			SetAutoReconnect(false).SetDefaultPublishHandler(func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }))
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("connect: %v", tok.Error())
		}
		return c
	}
	const topic = "fw/v1/down/ch-1/command"
	c := connect()
	if tok := c.Subscribe(topic, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	c.Disconnect(100)
	if err := s.Publish(topic, []byte("stale"), false, 1); err != nil {
		t.Fatal(err)
	}
	queued := func() int {
		cl, ok := s.Clients.Get("ch-1")
		if !ok {
			return -1
		}
		return cl.State.Inflight.Len()
	}
	testenv.WaitFor(t, 10*time.Second, "the command queued for the session", func() bool { return queued() == 1 })
	testenv.WaitFor(t, 10*time.Second, "the queued command dropped after the cap", func() bool { return queued() == 0 })
	c = connect()
	defer c.Disconnect(0)
	if err := s.Publish(topic, []byte("fresh"), false, 1); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-got:
		if p != "fresh" {
			t.Fatalf("the returning device got %q first", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fresh command not delivered")
	}
}
