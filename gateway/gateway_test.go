package gateway_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// simBus starts a simulated bus served until the test ends.
func simBus(t *testing.T, baud int) *rtu.Bus {
	t.Helper()
	b, err := rtu.NewBus(baud)
	if err != nil {
		testenv.Skip(t, "no pseudo-terminal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		// Bounded: a pty without read deadlines would block Serve for
		// ever, and a test must fail rather than hang.
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("simulator: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("%s did not stop within 10 s of its context", "simulator")
		}
		b.Close()
	})
	return b
}

// element is one reading of a gateway batch.
type element struct {
	Dev    string             `json:"dev"`
	TS     int64              `json:"ts"`
	Seq    int64              `json:"seq"`
	Ch     int                `json:"ch"`
	M      map[string]float64 `json:"m"`
	Event  string             `json:"event"`
	Active *bool              `json:"active"`
}

// collector subscribes to everything under fw/v1/up/.
type collector struct {
	mu       sync.Mutex
	readings []element
	acks     map[string]map[string]any
	status   []map[string]any
}

func collect(t *testing.T, url string) (*collector, paho.Client) {
	c := &collector{acks: map[string]map[string]any{}}
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("collector").SetOrderMatters(true))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect collector: %v", tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	tok := cl.Subscribe("fw/v1/up/#", 1, func(_ paho.Client, m paho.Message) {
		c.mu.Lock()
		defer c.mu.Unlock()
		switch topic := m.Topic(); {
		case topic == "fw/v1/up/gw/gw-t/batch":
			var b struct{ Readings []element }
			if err := json.Unmarshal(m.Payload(), &b); err != nil {
				t.Errorf("batch is not JSON: %v: %s", err, m.Payload())
			}
			c.readings = append(c.readings, b.Readings...)
		case topic == "fw/v1/up/gw/gw-t/status":
			var s map[string]any
			json.Unmarshal(m.Payload(), &s)
			c.status = append(c.status, s)
		default:
			var a map[string]any
			json.Unmarshal(m.Payload(), &a)
			if id, _ := a["id"].(string); id != "" {
				c.acks[id] = a
			}
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return c, cl
}

func (c *collector) snapshot() []element {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]element(nil), c.readings...)
}

func (c *collector) ack(id string) map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.acks[id]
}

// TestGateway polls two buses of simulated devices through a real
// Mosquitto: values arrive scaled, sequence numbers count up by one, a
// silent device goes offline and recovers, a command reaches its coil and
// is acknowledged.
func TestGateway(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	busA, busB := simBus(t, 115200), simBus(t, 9600)
	el := busA.AddSlave(1, maps["ARCM300"])
	hy := busA.AddSlave(2, maps["PT-100"])
	ch := busB.AddSlave(3, maps["CC-10"])
	el.Set("residual_current_ma", 0, 87)
	el.Set("cable_temp_c", 3, 41.5)
	el.Set("phase_current_a", 2, 12.34)
	el.Set("voltage_v", 1, 221.4)
	hy.Set("pressure_mpa", 0, 0.31)
	hy.Set("battery_pct", 0, 93)
	ch.Set("slot_temp_c", 7, 38.5)
	ch.Set("slot_power_w", 7, 460)
	ch.Set("door_open", 2, 1)

	coll, cl := collect(t, mq.URL)
	cfg := gateway.Defaults()
	cfg.GatewayID = "gw-t"
	cfg.MQTT.Broker = mq.URL
	cfg.MQTT.ReconnectMax = time.Second
	cfg.Spool.Dir = t.TempDir()
	cfg.StatusInterval = time.Hour
	cfg.MetricsListen = "127.0.0.1:0"
	dev := func(id, model string, slave int) gateway.DeviceConfig {
		return gateway.DeviceConfig{ID: id, Model: model, Slave: slave, Interval: 200 * time.Millisecond, OfflineAfter: 2}
	}
	cfg.Buses = []gateway.BusConfig{
		{Port: busA.Path, Baud: 115200, Timeout: 100 * time.Millisecond, Devices: []gateway.DeviceConfig{
			dev("el-1", "ARCM300", 1), dev("hy-1", "PT-100", 2), dev("ghost", "PT-100", 5)}},
		{Port: busB.Path, Baud: 9600, Timeout: 300 * time.Millisecond, Devices: []gateway.DeviceConfig{dev("ch-1", "CC-10", 3)}},
	}
	g, err := gateway.New(cfg, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10 s")
		}
	})

	find := func(dev string, ch int, metric string) (float64, bool) {
		for _, r := range coll.snapshot() {
			if r.Dev == dev && r.Ch == ch {
				if v, ok := r.M[metric]; ok {
					return v, true
				}
			}
		}
		return 0, false
	}
	want := []struct {
		dev    string
		ch     int
		metric string
		v      float64
	}{
		{"el-1", 0, "residual_current_ma", 87}, {"el-1", 3, "cable_temp_c", 41.5}, {"el-1", 2, "phase_current_a", 12.34},
		{"el-1", 1, "voltage_v", 221.4}, {"hy-1", 0, "pressure_mpa", 0.31}, {"hy-1", 0, "battery_pct", 93},
		{"ch-1", 7, "slot_temp_c", 38.5}, {"ch-1", 7, "slot_power_w", 460},
	}
	testenv.WaitFor(t, 10*time.Second, "a reading of every device", func() bool {
		for _, w := range want {
			if _, ok := find(w.dev, w.ch, w.metric); !ok {
				return false
			}
		}
		return true
	})
	for _, w := range want {
		if v, _ := find(w.dev, w.ch, w.metric); math.Abs(v-w.v) > 1e-9 {
			t.Errorf("%s ch %d %s = %v, want %v", w.dev, w.ch, w.metric, v, w.v)
		}
	}
	testenv.WaitFor(t, 5*time.Second, "the door event", func() bool {
		for _, r := range coll.snapshot() {
			if r.Dev == "ch-1" && r.Event == "door_open" && r.Ch == 2 && r.Active != nil && *r.Active {
				return true
			}
		}
		return false
	})

	// The silent device goes offline without starving the others, and
	// comes back when it answers.
	testenv.WaitFor(t, 5*time.Second, "ghost offline", func() bool { return g.Offline("ghost") })
	before := len(coll.snapshot())
	testenv.WaitFor(t, 5*time.Second, "el-1 still polled while ghost times out", func() bool {
		n := 0
		for _, r := range coll.snapshot()[before:] {
			if r.Dev == "el-1" && r.Ch == 0 {
				n++
			}
		}
		return n >= 5
	})
	busA.AddSlave(5, maps["PT-100"])
	testenv.WaitFor(t, 5*time.Second, "ghost back online", func() bool { return !g.Offline("ghost") })

	// Downlink: cut power of slot 3, then a command the model lacks.
	pub := func(dev, payload string) {
		tok := cl.Publish("fw/v1/down/"+dev+"/command", 1, false, payload)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish command: %v", tok.Error())
		}
	}
	now := time.Now().UnixMilli()
	pub("ch-1", fmt.Sprintf(`{"cmd":"cut_power","id":"cmd-1","ch":3,"ts":%d,"exp":%d}`, now, now+60000))
	testenv.WaitFor(t, 5*time.Second, "ack of cmd-1", func() bool { return coll.ack("cmd-1") != nil })
	if a := coll.ack("cmd-1"); a["ok"] != true {
		t.Errorf("ack = %v", a)
	}
	if !ch.Coil(3) || ch.Coil(0) || ch.Coil(2) {
		t.Errorf("coils after cut_power ch 3: main %v, slot 2 %v, slot 3 %v", ch.Coil(0), ch.Coil(2), ch.Coil(3))
	}
	pub("hy-1", fmt.Sprintf(`{"cmd":"cut_power","id":"cmd-2","ts":%d,"exp":%d}`, now, now+60000))
	testenv.WaitFor(t, 5*time.Second, "ack of cmd-2", func() bool { return coll.ack("cmd-2") != nil })
	if a := coll.ack("cmd-2"); a["ok"] != false || a["error"] == "" {
		t.Errorf("ack of a command the model lacks = %v", a)
	}

	// Sequence numbers: per device, one more per reading message.
	last := map[string]int64{}
	for _, r := range coll.snapshot() {
		if prev, ok := last[r.Dev]; ok && r.Seq != prev+1 {
			t.Errorf("%s: seq %d after %d", r.Dev, r.Seq, prev)
		}
		last[r.Dev] = r.Seq
	}
	if g.BusStats(0).Timeouts.Load() == 0 {
		t.Error("the ghost's timeouts were not counted")
	}
	resp, err := http.Get("http://" + g.MetricsAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, w := range []string{`firewatch_modbus_timeouts_total{bus="` + busA.Path + `"}`, "firewatch_spool_records ", "firewatch_gateway_uplink_up 1", "firewatch_gateway_devices_offline 0"} {
		if !strings.Contains(string(body), w) {
			t.Errorf("/metrics lacks %q", w)
		}
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}
