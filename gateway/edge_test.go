package gateway_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// edge is a gateway under test with its broker and collector.
type edge struct {
	t    *testing.T
	g    *gateway.Gateway
	coll *collector
	cl   paho.Client
	stop func()
}

// edgeConfig is a configuration for one bus of devices polled every
// 100 ms, on broker url, spooling to dir.
func edgeConfig(url, dir, port string, devs ...gateway.DeviceConfig) gateway.Config {
	cfg := gateway.Defaults()
	cfg.GatewayID = "gw-t"
	cfg.MQTT.Broker = url
	cfg.MQTT.ReconnectMax = time.Second
	cfg.Spool.Dir = dir
	cfg.StatusInterval = time.Hour
	cfg.Buses = []gateway.BusConfig{{Port: port, Baud: 115200, Timeout: 100 * time.Millisecond, Devices: devs}}
	return cfg
}

func edgeDev(id, model string, slave int) gateway.DeviceConfig {
	return gateway.DeviceConfig{ID: id, Model: model, Slave: slave, Interval: 100 * time.Millisecond, OfflineAfter: 2}
}

// startEdge runs a gateway with cfg until stop or the end of the test.
func startEdge(t *testing.T, cfg gateway.Config, coll *collector, cl paho.Client) *edge {
	t.Helper()
	maps, err := gateway.ShippedMaps()
	if err != nil {
		t.Fatal(err)
	}
	g, err := gateway.New(cfg, maps, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		t.Fatal(err)
	}
	coll.mu.Lock()
	statuses := len(coll.status)
	coll.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Run(ctx) }()
	e := &edge{t: t, g: g, coll: coll, cl: cl}
	// The status follows the command subscriptions on the connection.
	testenv.WaitFor(t, 10*time.Second, "the gateway's first status", func() bool {
		coll.mu.Lock()
		defer coll.mu.Unlock()
		return len(coll.status) > statuses
	})
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("gateway did not stop within 10 s")
		}
	}
	t.Cleanup(e.stop)
	return e
}

// command publishes a command to dev with the given JSON fields.
func (e *edge) command(dev, fields string) {
	e.t.Helper()
	tok := e.cl.Publish("fw/v1/down/"+dev+"/command", 1, false, "{"+fields+"}")
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		e.t.Fatalf("publish command: %v", tok.Error())
	}
}

// waitAck waits for the ack of id and returns it; with n, for the n-th ack
// of that id (acks of the same id replace each other in the collector, so
// the count is kept by the caller through ackCount).
func (e *edge) waitAck(id string) map[string]any {
	e.t.Helper()
	testenv.WaitFor(e.t, 10*time.Second, "ack of "+id, func() bool { return e.coll.ack(id) != nil })
	return e.coll.ack(id)
}

func (c *collector) forget(id string) {
	c.mu.Lock()
	delete(c.acks, id)
	c.mu.Unlock()
}

func (c *collector) lastStatus() map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.status) == 0 {
		return nil
	}
	return c.status[len(c.status)-1]
}

func cmdFields(id string, ch int, ts, exp int64) string {
	s := fmt.Sprintf(`"cmd":"cut_power","id":%q`, id)
	if ch > 0 {
		s += fmt.Sprintf(`,"ch":%d`, ch)
	}
	if ts != 0 {
		s += fmt.Sprintf(`,"ts":%d`, ts)
	}
	if exp != 0 {
		s += fmt.Sprintf(`,"exp":%d`, exp)
	}
	return s
}

// TestCommandExpiryAndRepeat: an expired command or one without ts/exp is
// refused and not written; an executed id sent again is answered with the
// first ack and dup, not written again, also after a restart (finding 3
// of issue 24: the same id six hours old wrote the coil twice).
func TestCommandExpiryAndRepeat(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	ch := sim.AddSlave(3, maps["CC-10"])
	coll, cl := collect(t, mq.URL)
	dir := t.TempDir()
	cfg := edgeConfig(mq.URL, dir, sim.Path, edgeDev("ch-1", "CC-10", 3))
	e := startEdge(t, cfg, coll, cl)
	now := time.Now().UnixMilli()
	sixHours := int64(6 * time.Hour / time.Millisecond)

	e.command("ch-1", cmdFields("old", 2, now-sixHours, now-sixHours+60000))
	if a := e.waitAck("old"); a["ok"] != false || a["error"] != "expired" {
		t.Errorf("expired command: ack %v", a)
	}
	e.command("ch-1", cmdFields("bare", 2, 0, 0))
	if a := e.waitAck("bare"); a["ok"] != false || a["error"] != "missing ts/exp" {
		t.Errorf("command without ts/exp: ack %v", a)
	}
	if w := ch.Writes(); len(w) != 0 || ch.Coil(2) {
		t.Fatalf("refused commands wrote %v", w)
	}

	e.command("ch-1", cmdFields("cut-1", 4, now, now+60000))
	first := e.waitAck("cut-1")
	if first["ok"] != true || first["state"] != "off" || first["dup"] != nil {
		t.Fatalf("first ack %v, want ok with state off", first)
	}
	if !ch.Coil(4) || len(ch.Writes()) != 1 {
		t.Fatalf("coil 4 %v after %d writes", ch.Coil(4), len(ch.Writes()))
	}
	// Someone restores the slot by hand; the repeat must not cut it again.
	ch.SetRaw(1, 4, 0)
	coll.forget("cut-1")
	e.command("ch-1", cmdFields("cut-1", 4, now, now+60000))
	if a := e.waitAck("cut-1"); a["dup"] != true || a["ok"] != true || a["state"] != "off" {
		t.Errorf("repeat ack %v, want the first ack with dup", a)
	}
	if len(ch.Writes()) != 1 || ch.Coil(4) {
		t.Fatalf("the repeated id was executed again: %d writes", len(ch.Writes()))
	}

	// The record survives a restart.
	e.stop()
	coll.forget("cut-1")
	e = startEdge(t, cfg, coll, cl)
	e.command("ch-1", cmdFields("cut-1", 4, now, now+int64(time.Hour/time.Millisecond)))
	if a := e.waitAck("cut-1"); a["dup"] != true {
		t.Errorf("repeat after restart: ack %v, want dup", a)
	}
	if len(ch.Writes()) != 1 {
		t.Fatalf("the repeated id was executed again after a restart: %d writes", len(ch.Writes()))
	}
}

// TestCommandReadback: the ack reports the output read back. A write whose
// answer is lost but which took effect is ok (finding 2 of issue 24); a
// relay that echoes the write but does not move is not, and neither is a
// write "answered" by an echoing adapter with no device behind it
// (finding 4).
func TestCommandReadback(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	ch := sim.AddSlave(3, maps["CC-10"])
	coll, cl := collect(t, mq.URL)
	cfg := edgeConfig(mq.URL, t.TempDir(), sim.Path, edgeDev("ch-1", "CC-10", 3), edgeDev("ghost", "CC-10", 9))
	e := startEdge(t, cfg, coll, cl)
	testenv.WaitFor(t, 10*time.Second, "first readings", func() bool { return len(coll.snapshot()) > 0 })
	now := time.Now().UnixMilli()

	// The write's answer is corrupted on the line, but the relay moved.
	ch.SetFault(rtu.Fault{Kind: rtu.FaultBadCRC, Count: 1})
	e.command("ch-1", cmdFields("lost-answer", 1, now, now+60000))
	if a := e.waitAck("lost-answer"); a["ok"] != true || a["state"] != "off" || !ch.Coil(1) {
		t.Errorf("write done but its answer lost: ack %v, coil %v", a, ch.Coil(1))
	}

	// A welded relay: the write is echoed, the output stays on.
	ch.SetStuck(true)
	e.command("ch-1", cmdFields("stuck", 2, now, now+60000))
	if a := e.waitAck("stuck"); a["ok"] != false || a["state"] != "on" || !strings.Contains(fmt.Sprint(a["error"]), "readback: state on") {
		t.Errorf("stuck relay: ack %v", a)
	}
	ch.SetStuck(false)

	// An echoing adapter and a device that is not there.
	sim.SetEcho(true)
	e.command("ghost", cmdFields("echo", 1, now, now+60000))
	if a := e.waitAck("echo"); a["ok"] != false {
		t.Errorf("write to an absent device through an echoing adapter: ack %v", a)
	}
	// The device behind the echoing adapter is still reachable.
	e.command("ch-1", cmdFields("through-echo", 5, now, now+60000))
	if a := e.waitAck("through-echo"); a["ok"] != true || a["state"] != "off" || !ch.Coil(5) {
		t.Errorf("write through an echoing adapter: ack %v, coil %v", a, ch.Coil(5))
	}
}

// TestCommandChannels: the channel is checked against the model (a CC-10
// has slots 1…10: ch 11 must not write coil 11), and the ARCM300's single
// trip relay is tripped for any of its channels (finding 7 of issue 24:
// channels 2–4 were refused).
func TestCommandChannels(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	ch := sim.AddSlave(3, maps["CC-10"])
	el := sim.AddSlave(1, maps["ARCM300"])
	coll, cl := collect(t, mq.URL)
	cfg := edgeConfig(mq.URL, t.TempDir(), sim.Path, edgeDev("ch-1", "CC-10", 3), edgeDev("el-1", "ARCM300", 1))
	e := startEdge(t, cfg, coll, cl)
	now := time.Now().UnixMilli()
	for _, bad := range []int{11, 13, -1} {
		id := fmt.Sprintf("slot%d", bad)
		e.command("ch-1", fmt.Sprintf(`"cmd":"cut_power","id":%q,"ch":%d,"ts":%d,"exp":%d`, id, bad, now, now+60000))
		if a := e.waitAck(id); a["ok"] != false || !strings.Contains(fmt.Sprint(a["error"]), "outside") {
			t.Errorf("ch %d: ack %v", bad, a)
		}
	}
	if w := ch.Writes(); len(w) != 0 {
		t.Errorf("out-of-range channels wrote %v", w)
	}
	e.command("el-1", cmdFields("cable3", 3, now, now+60000))
	if a := e.waitAck("cable3"); a["ok"] != true || a["state"] != "off" || !el.Coil(0) {
		t.Errorf("ARCM300 cut_power ch 3: ack %v, trip relay %v", a, el.Coil(0))
	}
}

// TestDeviceRefusesGaps: a device that answers "illegal data address" to
// a read through unmapped registers is read in parts instead of staying
// offline for good (finding 7 of issue 24).
func TestDeviceRefusesGaps(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	el := sim.AddSlave(1, maps["ARCM300"])
	el.SetPlausible()
	el.SetStrictGaps(true)
	coll, cl := collect(t, mq.URL)
	cfg := edgeConfig(mq.URL, t.TempDir(), sim.Path, edgeDev("el-1", "ARCM300", 1))
	e := startEdge(t, cfg, coll, cl)
	testenv.WaitFor(t, 10*time.Second, "a voltage reading of a device that refuses gaps", func() bool {
		for _, r := range coll.snapshot() {
			if _, ok := r.M["voltage_v"]; ok && r.Dev == "el-1" {
				return true
			}
		}
		return false
	})
	if e.g.Offline("el-1") {
		t.Error("el-1 offline")
	}
}

// TestSentinels: a sentinel register value is sent as null for that
// metric only, the channel's other metrics go through, and a sentinel in
// an event's status word is not an active event (finding 5 of issue 24).
func TestSentinels(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	el := sim.AddSlave(1, maps["ARCM300"])
	hy := sim.AddSlave(2, maps["PT-100"])
	el.SetPlausible()
	hy.SetPlausible()
	el.SetRaw(4, 2, 0x7FFF) // cable_temp_c ch 2: sensor open
	hy.SetRaw(3, 3, 0xFFFF) // tilt status word: not fitted
	coll, raw := collectRaw(t, mq.URL)
	cfg := edgeConfig(mq.URL, t.TempDir(), sim.Path, edgeDev("el-1", "ARCM300", 1), edgeDev("hy-1", "PT-100", 2))
	startEdge(t, cfg, coll, raw.client)
	testenv.WaitFor(t, 10*time.Second, "readings of both devices", func() bool {
		b := raw.text()
		return strings.Contains(b, `"dev":"el-1"`) && strings.Contains(b, `"dev":"hy-1"`)
	})
	b := raw.text()
	if !strings.Contains(b, `"cable_temp_c":null`) {
		t.Errorf("no null cable_temp_c in %s", b)
	}
	for _, r := range coll.snapshot() {
		if r.Dev == "el-1" && r.Ch == 2 {
			if _, ok := r.M["voltage_v"]; !ok {
				t.Errorf("ch 2 element lost its other metrics: %+v", r)
			}
		}
		if r.Event == "tilt" {
			t.Errorf("the tilt sentinel became an event: %+v", r)
		}
	}
	// A real tilt: bit 0 of the status word, other bits masked off.
	hy.SetRaw(3, 3, 0x0101)
	testenv.WaitFor(t, 10*time.Second, "the tilt event", func() bool {
		for _, r := range coll.snapshot() {
			if r.Event == "tilt" && r.Active != nil && *r.Active {
				return true
			}
		}
		return false
	})
}

// TestBusHealth: an adapter missing at start does not stop the gateway
// (its bus is reported down, naming its devices, and the port is opened
// when it appears, here through a /dev/serial/by-id-style link); a bus
// whose devices all stop answering is reported down, and up again when
// they answer (findings 6 and 7 of issue 24).
func TestBusHealth(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	maps, _ := gateway.ShippedMaps()
	sim := simBus(t, 115200)
	el := sim.AddSlave(1, maps["ARCM300"])
	hy := sim.AddSlave(2, maps["PT-100"])
	coll, cl := collect(t, mq.URL)
	link := filepath.Join(t.TempDir(), "usb-FTDI_FT232R_USB_UART_A10K-if00-port0")
	cfg := edgeConfig(mq.URL, t.TempDir(), link, edgeDev("el-1", "ARCM300", 1), edgeDev("hy-1", "PT-100", 2))
	e := startEdge(t, cfg, coll, cl)
	busState := func() map[string]any {
		s := coll.lastStatus()
		if s == nil {
			return nil
		}
		buses, _ := s["buses"].([]any)
		if len(buses) != 1 {
			return nil
		}
		b, _ := buses[0].(map[string]any)
		return b
	}
	testenv.WaitFor(t, 10*time.Second, "the missing adapter's bus reported down", func() bool {
		b := busState()
		return b != nil && b["ok"] == false
	})
	if b := busState(); fmt.Sprint(b["devices"]) != "[el-1 hy-1]" || !strings.Contains(fmt.Sprint(b["error"]), "serial port") {
		t.Errorf("bus state %v", b)
	}
	if err := os.Symlink(sim.Path, link); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "the bus up once the adapter appears", func() bool {
		b := busState()
		return b != nil && b["ok"] == true && !e.g.Offline("el-1")
	})
	// The cable is cut: nobody answers.
	el.SetFault(rtu.Fault{Kind: rtu.FaultNoAnswer})
	hy.SetFault(rtu.Fault{Kind: rtu.FaultNoAnswer})
	testenv.WaitFor(t, 10*time.Second, "the silent bus reported down", func() bool {
		b := busState()
		return b != nil && b["ok"] == false && strings.Contains(fmt.Sprint(b["error"]), "no device")
	})
	el.SetFault(rtu.Fault{})
	testenv.WaitFor(t, 10*time.Second, "the bus up again", func() bool {
		b := busState()
		return b != nil && b["ok"] == true
	})
}

// rawCollector keeps the raw batch payloads.
type rawCollector struct {
	client paho.Client
	c      *collector
	raw    []string
}

func (r *rawCollector) text() string {
	r.c.mu.Lock()
	defer r.c.mu.Unlock()
	return strings.Join(r.raw, "\n")
}

func collectRaw(t *testing.T, url string) (*collector, *rawCollector) {
	coll, cl := collect(t, url)
	r := &rawCollector{client: cl, c: coll}
	tok := cl.Subscribe("fw/v1/up/gw/gw-t/batch", 1, func(_ paho.Client, m paho.Message) {
		coll.mu.Lock()
		r.raw = append(r.raw, string(m.Payload()))
		coll.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return coll, r
}
