package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/firmware-sim/rtu"
	"github.com/firewatch-iot/firewatch/gateway"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// The gateway tests run simulated Modbus slaves on real pseudo-terminals,
// firegate's core (package gateway) on them, a real Mosquitto, firewatch
// and a real InfluxDB.

// gwValue is the physical value the simulator holds for a point: plausible
// for the metric, different per channel, never near an alarm threshold.
func gwValue(metric string, ch int) float64 {
	if metric == "door_open" && ch == 2 {
		return 1 // one active event
	}
	return rtu.Plausible(metric, ch)
}

// gwRig is firewatch with InfluxDB and Mosquitto, and simulated buses.
type gwRig struct {
	t      *testing.T
	mq     *testenv.Mosquitto
	db     *testenv.InfluxDB
	svc    *service
	maps   gateway.Maps
	slaves map[string]*rtu.Slave // by device id
	cfg    gateway.Config
}

func newGWRig(t *testing.T) *gwRig {
	r := &gwRig{t: t, slaves: map[string]*rtu.Slave{}}
	r.mq = testenv.StartMosquitto(t)
	r.db = testenv.StartInfluxDB(t)
	rcv := newReceiver(t)
	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.MQTT.Broker = r.mq.URL
	cfg.MQTT.ClientID = "firewatch-gw-e2e"
	cfg.Influx.URL = r.db.URL
	cfg.Influx.Bucket = r.db.Bucket
	cfg.Influx.FlushInterval = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.RetryMin = 50 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	r.svc, _ = runService(t, &cfg, slog.LevelError)

	var err error
	if r.maps, err = gateway.ShippedMaps(); err != nil {
		t.Fatal(err)
	}
	// Two buses as a charging shed and a factory would have them: el-1 and
	// hy-1 on a fast bus, the charging cabinet on a slow one. The ledger
	// assigns all three to gateway gw-1.
	fast, slow := r.bus(115200), r.bus(9600)
	r.cfg = gateway.Defaults()
	r.cfg.GatewayID = "gw-1"
	r.cfg.MQTT.Broker = r.mq.URL
	r.cfg.MQTT.ReconnectMax = 500 * time.Millisecond
	r.cfg.MQTT.PublishTimeout = 2 * time.Second
	r.cfg.Spool.Dir = t.TempDir()
	r.cfg.StatusInterval = time.Hour
	dev := func(b *rtu.Bus, id, model string, slave int) gateway.DeviceConfig {
		s := b.AddSlave(byte(slave), r.maps[model])
		for i := range s.Map.Points {
			p := &s.Map.Points[i]
			if err := s.Set(p.Metric.String(), p.Ch, gwValue(p.Metric.String(), p.Ch)); err != nil {
				t.Fatal(err)
			}
		}
		r.slaves[id] = s
		return gateway.DeviceConfig{ID: id, Model: model, Slave: slave, Interval: 300 * time.Millisecond}
	}
	r.cfg.Buses = []gateway.BusConfig{
		{Port: fast.Path, Baud: 115200, Timeout: 200 * time.Millisecond, Retries: 1,
			Devices: []gateway.DeviceConfig{dev(fast, "el-1", "ARCM300", 1), dev(fast, "hy-1", "PT-100", 2)}},
		{Port: slow.Path, Baud: 9600, Timeout: 300 * time.Millisecond, Retries: 1,
			Devices: []gateway.DeviceConfig{dev(slow, "ch-1", "CC-10", 1)}},
	}
	return r
}

func (r *gwRig) bus(baud int) *rtu.Bus {
	b, err := rtu.NewBus(baud)
	if err != nil {
		testenv.Skip(r.t, "no pseudo-terminal: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Serve(ctx) }()
	r.t.Cleanup(func() {
		cancel()
		// Bounded: a pty without read deadlines would block Serve for
		// ever, and a test must fail rather than hang.
		select {
		case err := <-done:
			if err != nil {
				r.t.Errorf("simulator: %v", err)
			}
		case <-time.After(10 * time.Second):
			r.t.Errorf("%s did not stop within 10 s of its context", "simulator")
		}
		b.Close()
	})
	return b
}

// runningGateway is one run of firegate's core.
type runningGateway struct {
	g      *gateway.Gateway
	cancel context.CancelFunc
	done   chan error
}

func (r *gwRig) startGateway() *runningGateway {
	log := slog.New(slog.NewTextHandler(testWriter{r.t}, &slog.HandlerOptions{Level: slog.LevelError}))
	g, err := gateway.New(r.cfg, r.maps, log)
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rg := &runningGateway{g: g, cancel: cancel, done: make(chan error, 1)}
	go func() { rg.done <- g.Run(ctx) }()
	r.t.Cleanup(rg.stop)
	return rg
}

func (rg *runningGateway) stop() {
	if rg.cancel == nil {
		return
	}
	rg.cancel()
	rg.cancel = nil
	select {
	case <-rg.done:
	case <-time.After(15 * time.Second):
		panic("gateway did not stop within 15 s")
	}
}

// gwElement is one reading of a gateway batch, as firegate sent it.
type gwElement struct {
	Dev    string             `json:"dev"`
	TS     int64              `json:"ts"`
	Seq    int64              `json:"seq"`
	Ch     int                `json:"ch"`
	M      map[string]float64 `json:"m"`
	Event  string             `json:"event"`
	Active *bool              `json:"active"`
}

// gwTap records every batch the broker delivers, through a persistent
// session so that nothing published while it reconnects is missed.
type gwTap struct {
	mu  sync.Mutex
	all []gwElement
}

func (r *gwRig) tap() *gwTap {
	tp := &gwTap{}
	o := paho.NewClientOptions().AddBroker(r.mq.URL).SetClientID("gw-tap").SetCleanSession(false).
		SetOrderMatters(true).SetAutoReconnect(true).SetMaxReconnectInterval(500 * time.Millisecond)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("connect tap: %v", tok.Error())
	}
	r.t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe("fw/v1/up/gw/gw-1/batch", 1, func(_ paho.Client, m paho.Message) {
		var b struct{ Readings []gwElement }
		if err := json.Unmarshal(m.Payload(), &b); err != nil {
			r.t.Errorf("batch is not JSON: %v", err)
		}
		tp.mu.Lock()
		tp.all = append(tp.all, b.Readings...)
		tp.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		r.t.Fatalf("subscribe tap: %v", tok.Error())
	}
	return tp
}

func (tp *gwTap) elements() []gwElement {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return append([]gwElement(nil), tp.all...)
}

type gwKey struct {
	dev, field string
	ch         int
	ms         int64
}

// expected returns the distinct readings the tap saw (a re-sent batch
// counts once) as InfluxDB points, with the simulator's value of each.
func (r *gwRig) expected(els []gwElement) map[gwKey]float64 {
	want := map[gwKey]float64{}
	for _, e := range els {
		s := r.slaves[e.Dev]
		if s == nil {
			r.t.Fatalf("reading of unknown device %q", e.Dev)
		}
		for f, v := range e.M {
			if q := s.Quantize(f, e.Ch, gwValue(f, e.Ch)); math.Abs(v-q) > 1e-9*math.Max(1, math.Abs(q)) {
				r.t.Errorf("%s ch %d %s sent as %v, the device holds %v", e.Dev, e.Ch, f, v, q)
			}
			want[gwKey{e.Dev, f, e.Ch, e.TS}] = v
		}
		if e.Event != "" {
			v := 1.0
			if e.Active != nil && !*e.Active {
				v = 0
			}
			want[gwKey{e.Dev, e.Event, e.Ch, e.TS}] = v
		}
	}
	return want
}

// stored returns the gateway devices' points in InfluxDB; dup counts
// points seen twice (which InfluxDB's model cannot hold, but a query
// across shards could).
func (r *gwRig) stored() (map[gwKey]float64, int) {
	rows := r.db.Flux(r.t, `from(bucket: "`+r.db.Bucket+`") |> range(start: -1h) |> filter(fn: (r) => r._measurement != "alarms" and (r.device == "el-1" or r.device == "hy-1" or r.device == "ch-1"))`)
	got := map[gwKey]float64{}
	dup := 0
	for _, row := range rows {
		ts, err := time.Parse(time.RFC3339Nano, row["_time"])
		if err != nil {
			r.t.Fatalf("row time %q: %v", row["_time"], err)
		}
		ch, _ := strconv.Atoi(row["ch"])
		v, _ := strconv.ParseFloat(row["_value"], 64)
		k := gwKey{row["device"], row["_field"], ch, ts.UnixMilli()}
		if _, ok := got[k]; ok {
			dup++
		}
		got[k] = v
	}
	return got, dup
}

// checkStored waits until InfluxDB holds exactly the readings the tap saw,
// each with its value. Both are subscribers of the same broker, so either
// may be a batch ahead for a moment: it compares until they agree or the
// deadline passes.
func (r *gwRig) checkStored(tp *gwTap) map[gwKey]float64 {
	var want, got map[gwKey]float64
	var dup int
	same := func() bool {
		if len(got) != len(want) || dup > 0 {
			return false
		}
		for k, v := range want {
			if g, ok := got[k]; !ok || math.Abs(g-v) > 1e-9*math.Max(1, math.Abs(v)) {
				return false
			}
		}
		return true
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		want = r.expected(tp.elements())
		got, dup = r.stored()
		if same() || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	missing := 0
	for k, v := range want {
		g, ok := got[k]
		switch {
		case !ok:
			if missing++; missing <= 5 {
				r.t.Errorf("reading %+v not in InfluxDB", k)
			}
		case math.Abs(g-v) > 1e-9*math.Max(1, math.Abs(v)):
			r.t.Errorf("reading %+v stored as %v, sent as %v", k, g, v)
		}
	}
	if !same() {
		r.t.Errorf("InfluxDB holds %d points (%d twice), %d missing; the gateway sent %d", len(got), dup, missing, len(want))
	}
	return want
}

// TestGatewayEndToEnd: every value polled from simulated Modbus slaves
// arrives in InfluxDB with its scale applied, in the catalog's unit.
func TestGatewayEndToEnd(t *testing.T) {
	r := newGWRig(t)
	tp := r.tap()
	rg := r.startGateway()
	// Three polls of every device reach the broker.
	testenv.WaitFor(t, 20*time.Second, "three polls of every device", func() bool {
		n := map[string]int{}
		for _, e := range tp.elements() {
			if e.Ch <= 1 && e.M != nil {
				n[e.Dev]++
			}
		}
		return n["el-1"] >= 6 && n["hy-1"] >= 3 && n["ch-1"] >= 3
	})
	rg.stop()
	want := r.checkStored(tp)
	// Every point of every shipped map is among them.
	for id, s := range r.slaves {
		for i := range s.Map.Points {
			p := &s.Map.Points[i]
			if p.Event() && gwValue(p.Metric.String(), p.Ch) == 0 {
				continue // an inactive event is sent on a change only
			}
			found := false
			for k := range want {
				if k.dev == id && k.field == p.Metric.String() && k.ch == p.Ch {
					found = true
					break
				}
			}
			if !found {
				t.Errorf("%s %s ch %d never arrived", id, p.Metric, p.Ch)
			}
		}
	}
	m := scrape(t, r.svc.httpURL()+"/metrics")
	for k, v := range m {
		if len(k) > 30 && k[:31] == "firewatch_ingest_rejected_total" && v > 0 {
			t.Errorf("%s = %v: firewatch rejected gateway readings", k, v)
		}
	}
}

// TestGatewayOutage: the broker goes away, firegate keeps polling into its
// spool, is restarted in the middle of the outage, and after the broker
// returns every reading is in InfluxDB exactly once, in order per device.
func TestGatewayOutage(t *testing.T) {
	r := newGWRig(t)
	tp := r.tap()
	rg := r.startGateway()
	testenv.WaitFor(t, 20*time.Second, "the first batches", func() bool { return rg.g.Published() >= 10 })

	r.mq.Stop()
	testenv.WaitFor(t, 20*time.Second, "readings spooled during the outage", func() bool { return rg.g.Spooled() >= 20 })
	rg.stop() // firegate restarts in the middle of the outage
	spooled := 0
	rg = r.startGateway()
	testenv.WaitFor(t, 20*time.Second, "more readings spooled after the restart", func() bool {
		spooled = rg.g.Spooled()
		return spooled >= 40
	})
	r.mq.Start()
	testenv.WaitFor(t, 30*time.Second, "the spool drained", func() bool { return rg.g.Spooled() < 10 && rg.g.Published() >= uint64(spooled) })
	rg.stop()

	els := tp.elements()
	// No reading lost: per device the distinct sequence numbers run
	// without a gap, and in sequence order the timestamps increase.
	byDev := map[string]map[int64]gwElement{}
	for _, e := range els {
		if byDev[e.Dev] == nil {
			byDev[e.Dev] = map[int64]gwElement{}
		}
		if prev, ok := byDev[e.Dev][e.Seq]; ok && prev.TS != e.TS {
			t.Errorf("%s: seq %d sent with two timestamps", e.Dev, e.Seq)
		}
		byDev[e.Dev][e.Seq] = e
	}
	for dev, seqs := range byDev {
		var s []int64
		for q := range seqs {
			s = append(s, q)
		}
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		for i := 1; i < len(s); i++ {
			if s[i] != s[i-1]+1 {
				t.Errorf("%s: sequence jumps %d → %d: readings lost", dev, s[i-1], s[i])
			}
			if seqs[s[i]].TS < seqs[s[i-1]].TS {
				t.Errorf("%s: seq %d is older than seq %d", dev, s[i], s[i-1])
			}
		}
	}
	// Delivered in order per device: first arrivals of each seq increase.
	seen := map[string]int64{}
	first := map[string]map[int64]bool{}
	for _, e := range els {
		if first[e.Dev] == nil {
			first[e.Dev] = map[int64]bool{}
		}
		if first[e.Dev][e.Seq] {
			continue // a re-sent batch
		}
		first[e.Dev][e.Seq] = true
		if last, ok := seen[e.Dev]; ok && e.Seq < last {
			t.Errorf("%s: seq %d delivered after %d", e.Dev, e.Seq, last)
		}
		seen[e.Dev] = e.Seq
	}
	want := r.checkStored(tp)
	t.Logf("%d readings, %d spooled at the peak of the outage", len(want), spooled)
	if len(want) < 40 {
		t.Errorf("only %d readings in the test; the outage did not happen?", len(want))
	}
}
