package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/rules"
)

// edgeRig is firewatch with its embedded broker and firegate's core on a
// simulated RS-485 bus with el-1 (ARCM300) and hy-1 (PT-100) of gw-1.
type edgeRig struct {
	s      *service
	url    string
	rcv    *receiver
	bus    *rtu.Bus
	el, hy *rtu.Slave
	stop   func()
}

func newEdgeRig(t *testing.T, setup func(el, hy *rtu.Slave)) *edgeRig {
	rcv := newReceiver(t)
	s, url, _ := embeddedService(t, rcv, func(c *Config) {
		c.Liveness.Tick = 100 * time.Millisecond
		// Offline after 3 s of silence: well after the gateway reports a
		// dead bus (a few polls of 200 ms), also on a loaded machine.
		c.Liveness.Electrical = 1500 * time.Millisecond
		c.Liveness.Hydrant = 1500 * time.Millisecond
		c.Alarms.StormWindow = 0 // one push per alarm, to look at each
	})
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	bus, err := rtu.NewBus(115200)
	if err != nil {
		testenv.Skip(t, "no pseudo-terminal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { defer close(served); bus.Serve(ctx) }()
	t.Cleanup(func() { cancel(); <-served; bus.Close() })
	el := bus.AddSlave(1, maps["ARCM300"])
	hy := bus.AddSlave(2, maps["PT-100"])
	el.SetPlausible()
	hy.SetPlausible()
	if setup != nil {
		setup(el, hy)
	}

	cfg := gateway.Defaults()
	cfg.GatewayID = "gw-1"
	cfg.MQTT.Broker, cfg.MQTT.Username, cfg.MQTT.Password = url, "gw-1", "gw-1-secret"
	cfg.MQTT.ClientID = "gw-1" // the embedded broker wants client id = user name
	cfg.MQTT.ReconnectMax = time.Second
	cfg.Spool.Dir = t.TempDir()
	cfg.StatusInterval = time.Hour
	dev := func(id, model string, slave int) gateway.DeviceConfig {
		return gateway.DeviceConfig{ID: id, Model: model, Slave: slave, Interval: 200 * time.Millisecond, OfflineAfter: 2}
	}
	cfg.Buses = []gateway.BusConfig{{Port: bus.Path, Baud: 115200, Timeout: 100 * time.Millisecond,
		Devices: []gateway.DeviceConfig{dev("el-1", "ARCM300", 1), dev("hy-1", "PT-100", 2)}}}
	g, err := gateway.New(cfg, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	gctx, stopGateway := context.WithCancel(context.Background())
	gdone := make(chan error, 1)
	go func() { gdone <- g.Run(gctx) }()
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopGateway()
			<-gdone
		}
	}
	t.Cleanup(stop)
	return &edgeRig{s: s, url: url, rcv: rcv, bus: bus, el: el, hy: hy, stop: stop}
}

func is(rule, transition string) func(map[string]any) bool {
	return func(b map[string]any) bool { return b["rule"] == rule && b["transition"] == transition }
}

// TestSensorFault: a cable sensor that reads the map's sentinel raises one
// fault (传感器未接) for that channel, which clears when it reads again
// (issue 24, finding 5).
func TestSensorFault(t *testing.T) {
	r := newEdgeRig(t, func(el, _ *rtu.Slave) { el.SetRaw(4, 2, 0x7FFF) }) // cable sensor 2 not connected
	rcv, el := r.rcv, r.el
	p, _ := rcv.nextPush(t, 15*time.Second, "sensor fault", is("electrical.cable_temp_c.sensor_absent", "raised"))
	if msg, _ := p["message"].(string); p["channel"] != 2.0 || p["severity"] != "fault" || !strings.Contains(msg, "传感器未接") {
		t.Errorf("sensor fault push %v", p)
	}
	el.Set("cable_temp_c", 2, 30)
	rcv.nextPush(t, 15*time.Second, "sensor fault cleared", is("electrical.cable_temp_c.sensor_absent", "cleared"))
}

// TestBusFault: a bus whose devices all stop answering raises one bus
// fault naming them, and none of them gets an offline alarm while it is
// open; once the bus is back, a device that stays silent gets its own
// offline alarm: nothing is hidden for good. A gateway's last will raises
// one fault for the gateway, its clean stop none (issue 24, finding 6).
func TestBusFault(t *testing.T) {
	r := newEdgeRig(t, nil)
	rcv, el, hy, bus, s := r.rcv, r.el, r.hy, r.bus, r.s
	testenv.WaitFor(t, 15*time.Second, "both devices heard", func() bool { return heard(s, "el-1") && heard(s, "hy-1") })
	// The cable is cut.
	el.SetFault(rtu.Fault{Kind: rtu.FaultNoAnswer})
	hy.SetFault(rtu.Fault{Kind: rtu.FaultNoAnswer})
	p, _ := rcv.nextPush(t, 15*time.Second, "bus fault", is("electrical.bus_fault", "raised"))
	if msg, _ := p["message"].(string); !strings.Contains(msg, "el-1") || !strings.Contains(msg, "hy-1") || !strings.Contains(msg, bus.Path) {
		t.Errorf("bus fault push does not name the bus and its devices: %v", p["message"])
	}
	// Both devices fall silent past their grace: liveness has them offline,
	// and no offline alarm was made of it.
	testenv.WaitFor(t, 15*time.Second, "both devices offline in liveness", func() bool { return s.live.Offline() >= 2 })
	if n := openOffline(t, s); n != 0 {
		t.Errorf("%d offline alarms opened while the bus fault names their devices", n)
	}
	for _, p := range rcv.all() {
		if p.body["severity"] == "offline" {
			t.Errorf("offline push during a bus fault: %v", p.body["message"])
		}
	}

	// The bus is back, but the pressure sensor stays silent: the bus fault
	// clears and hy-1 gets its own offline alarm a grace later.
	el.SetFault(rtu.Fault{})
	rcv.nextPush(t, 15*time.Second, "bus fault cleared", is("electrical.bus_fault", "cleared"))
	p, _ = rcv.nextPush(t, 15*time.Second, "hy-1 offline after the bus is back", is("hydrant.offline", "raised"))
	if d, _ := p["device"].(map[string]any); d["id"] != "hy-1" {
		t.Errorf("offline push for %v", d)
	}
	for _, p := range rcv.all() {
		if d, _ := p.body["device"].(map[string]any); p.body["severity"] == "offline" && d["id"] == "el-1" {
			t.Errorf("offline push for el-1, which answers: %v", p.body["message"])
		}
	}

	// A clean stop raises nothing; a last will raises one gateway fault.
	r.stop()
	will := mqttClient(t, r.url, "gw-1", "gw-1", "gw-1-secret")
	publish(t, will, "fw/v1/up/gw/gw-1/status", `{"online":false}`)
	p, _ = rcv.nextPush(t, 15*time.Second, "gateway fault", func(b map[string]any) bool {
		rule, _ := b["rule"].(string)
		return strings.HasSuffix(rule, ".gateway_offline") && b["transition"] == "raised"
	})
	if msg, _ := p["message"].(string); !strings.Contains(msg, "gw-1") || !strings.Contains(msg, "hy-1") {
		t.Errorf("gateway fault push %v", p["message"])
	}
	publish(t, will, "fw/v1/up/gw/gw-1/status", fmt.Sprintf(`{"ts":%d,"online":true,"buses":[]}`, time.Now().UnixMilli()))
	rcv.nextPush(t, 15*time.Second, "gateway fault cleared", func(b map[string]any) bool {
		rule, _ := b["rule"].(string)
		return strings.HasSuffix(rule, ".gateway_offline") && b["transition"] == "cleared"
	})
}

func openOffline(t *testing.T, s *service) int {
	t.Helper()
	s.alarms.Sync()
	list, err := s.alarms.List(context.Background(), alarms.Filter{State: alarms.FilterOpen, Severity: rules.SeverityOffline})
	if err != nil {
		t.Fatal(err)
	}
	return len(list)
}

// heard reports whether firewatch has heard from device id.
func heard(s *service, id string) bool {
	d, ok := s.ledger.LookupID(id)
	return ok && s.live.Status(d.Index).LastSeen > 0
}
