package broker

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestAuthFollowsRegistry: with real MQTT clients, a device and a gateway
// added to the live registry connect at once with their secrets; a device
// removed while connected is disconnected and refused at its next
// CONNECT; a changed secret takes over from the old one.
func TestAuthFollowsRegistry(t *testing.T) {
	l, secrets := authLedger(t)
	a, err := NewAuth(AuthConfig{Ledger: l, ServicePassword: "svc", ServiceClientID: "firewatch", Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	srv, err := Start(Config{Addr: addr, Auth: a, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	live := devices.NewLive(l)
	a.Follow(live, srv)
	b := &testBroker{url: "tcp://" + addr, got: make(chan string, 100)}
	svc, err := b.connect("firewatch", ServiceUser, "svc", false)
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Disconnect(0)
	if tok := svc.Subscribe("fw/v1/up/#", 1, func(_ paho.Client, m paho.Message) { b.got <- m.Topic() }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal("subscribe", tok.Error())
	}
	hash := func(s string) string {
		h, err := HashSecret([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		return h
	}

	if c, err := b.connect("el-9", "el-9", "el9-secret", false); err == nil {
		c.Disconnect(0)
		t.Fatal("el-9 connected before it is in the registry")
	}
	if _, _, err := live.Apply(&devices.Change{
		UpsertDevices:  []devices.DeviceEntry{{ID: "el-9", Kind: "electrical", Grid: "450204002003", SecretHash: hash("el9-secret")}},
		UpsertGateways: []devices.GatewayEntry{{ID: "gw-3", SecretHash: hash("gw3-secret")}},
	}); err != nil {
		t.Fatal(err)
	}
	el9, err := b.connect("el-9", "el-9", "el9-secret", false)
	if err != nil {
		t.Fatalf("el-9 added to the registry: %v", err)
	}
	defer el9.Disconnect(0)
	if tok := el9.Publish("fw/v1/up/el-9/telemetry", 1, false, `{"m":{}}`); !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
		t.Fatal("publish", tok.Error())
	}
	expect(t, b.got, "fw/v1/up/el-9/telemetry")
	gw3, err := b.connect("gw-3", "gw-3", "gw3-secret", false)
	if err != nil {
		t.Fatalf("gw-3 added to the registry: %v", err)
	}
	gw3.Disconnect(0)

	// el-1 connected, then removed: its connection is closed.
	el1, err := b.connect("el-1", "el-1", secrets["el-1"], false)
	if err != nil {
		t.Fatal(err)
	}
	defer el1.Disconnect(0)
	if _, _, err := live.Apply(&devices.Change{DeleteDevices: []string{"el-1"}}); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "removed device disconnected", func() bool { return !el1.IsConnectionOpen() })
	if c, err := b.connect("el-1", "el-1", secrets["el-1"], false); err == nil {
		c.Disconnect(0)
		t.Error("removed device connected again")
	}

	// sm-1's secret changes: the old one is refused, the new one admitted.
	if _, _, err := live.Apply(&devices.Change{UpsertDevices: []devices.DeviceEntry{
		{ID: "sm-1", Kind: "smoke", Grid: "450204002003", SecretHash: hash("sm-new")}}}); err != nil {
		t.Fatal(err)
	}
	if c, err := b.connect("sm-1", "sm-1", secrets["sm-1"], false); err == nil {
		c.Disconnect(0)
		t.Error("old secret admitted after the change")
	}
	sm, err := b.connect("sm-1", "sm-1", "sm-new", false)
	if err != nil {
		t.Fatalf("new secret: %v", err)
	}
	sm.Disconnect(0)
}
