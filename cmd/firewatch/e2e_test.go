package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/firewatch-iot/firewatch/alarms"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

const e2eSecret = "e2e-secret-0123456789"

// push is one request the dispatch receiver got.
type push struct {
	path string
	sig  error
	body map[string]any
}

// receiver is a real HTTP dispatch endpoint on loopback.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	pushes []push
	got    chan struct{}
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{got: make(chan struct{}, 100)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		p := push{path: req.URL.Path}
		p.sig = alarms.Verify([]byte(e2eSecret), req.Header.Get("X-Firewatch-Timestamp"), b, req.Header.Get("X-Firewatch-Signature"))
		if err := json.Unmarshal(b, &p.body); err != nil {
			t.Errorf("push body is not JSON: %v", err)
		}
		r.mu.Lock()
		r.pushes = append(r.pushes, p)
		r.mu.Unlock()
		r.got <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) all() []push {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]push(nil), r.pushes...)
}

// raisedTimes is a dispatch endpoint on loopback that notes when the first
// raised push of each device arrived, for latency measurements.
type raisedTimes struct {
	*httptest.Server
	mu sync.Mutex
	at map[string]time.Time // device → first raised push received
}

func newRaisedTimes(t *testing.T) *raisedTimes {
	r := &raisedTimes{at: map[string]time.Time{}}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		now := time.Now()
		b, _ := io.ReadAll(req.Body)
		var p struct {
			Transition string
			Device     struct{ ID string }
		}
		if err := json.Unmarshal(b, &p); err != nil {
			t.Errorf("push is not JSON: %v", err)
		}
		if p.Transition == "raised" {
			r.mu.Lock()
			if _, ok := r.at[p.Device.ID]; !ok {
				r.at[p.Device.ID] = now
			}
			r.mu.Unlock()
		}
	}))
	t.Cleanup(r.Close)
	return r
}

// count is how many devices' raised pushes arrived.
func (r *raisedTimes) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.at)
}

// since returns how long after t0 the raised push of dev arrived.
func (r *raisedTimes) since(dev string, t0 time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.at[dev].Sub(t0)
}

// writeLedger copies the test ledger with the station pointed at url.
func writeLedger(t *testing.T, url string) string {
	b, err := os.ReadFile("../../devices/testdata/ledger.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "http://127.0.0.1:8090", url)
	path := filepath.Join(t.TempDir(), "ledger.yaml")
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type published struct {
	measurement, device, field string
	ch                         int
	value                      float64
	ms                         int64
}

// TestEndToEnd publishes readings through a real Mosquitto into firewatch,
// and checks them in a real InfluxDB and the alarm push at a real HTTP
// receiver.
func TestEndToEnd(t *testing.T) {
	mq := testenv.StartMosquitto(t)
	db := testenv.StartInfluxDB(t)
	rcv := newReceiver(t)

	cfg := defaults()
	cfg.Ledger = writeLedger(t, rcv.URL)
	cfg.MQTT.Broker = mq.URL
	cfg.MQTT.ClientID = "firewatch-e2e"
	cfg.Influx.URL = db.URL
	cfg.Influx.Bucket = db.Bucket
	cfg.Influx.FlushInterval = 100 * time.Millisecond
	cfg.Alarms.DB = filepath.Join(t.TempDir(), "alarms.db")
	cfg.Alarms.Secret = e2eSecret
	cfg.Alarms.RetryMin = 50 * time.Millisecond
	cfg.HTTP.Listen = "127.0.0.1:0"
	s, stop := runService(t, &cfg, slog.LevelWarn)

	pub := newPublisher(t, mq.URL)
	t0 := time.Now().Add(-time.Minute).Truncate(time.Second).UnixMilli()
	var want []published
	tel := func(dev, measurement string, ch int, seq int, ms int64, kv ...any) {
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
			want = append(want, published{measurement, dev, kv[i].(string), ch, kv[i+1].(float64), ms})
		}
		p := map[string]any{"ts": ms, "seq": seq, "m": m}
		if ch > 0 {
			p["ch"] = ch
		}
		pub.json("fw/v1/up/"+dev+"/telemetry", p)
	}
	// Normal readings of every kind.
	tel("el-1", "electrical", 0, 1, t0, "residual_current_ma", 35.5, "voltage_v", 221.4)
	tel("el-1", "electrical", 2, 2, t0+100, "cable_temp_c", 41.25)
	tel("hy-1", "hydrant", 0, 1, t0, "pressure_mpa", 0.31)
	tel("ch-1", "charger", 3, 1, t0, "slot_temp_c", 38.5, "slot_power_w", 460.0)
	pub.json("fw/v1/up/sm-1/status", map[string]any{"ts": t0, "seq": 1, "m": map[string]any{"battery_pct": 87.0, "rssi_dbm": -91.0}})
	want = append(want, published{"smoke", "sm-1", "battery_pct", 0, 87, t0}, published{"smoke", "sm-1", "rssi_dbm", 0, -91, t0})
	// A gateway batch.
	pub.raw("fw/v1/up/gw/gw-1/batch", fmt.Sprintf(`{"readings":[{"dev":"hy-1","ts":%d,"seq":2,"m":{"pressure_mpa":0.29}},{"dev":"ghost","m":{"x":1}}]}`, t0+1000))
	want = append(want, published{"hydrant", "hy-1", "pressure_mpa", 0, 0.29, t0 + 1000})
	// Residual current over the 300 mA alarm level, held 11 s (device time)
	// against the rule's 10 s: one alarm.
	for i, sec := range []int64{10, 15, 21} {
		tel("el-1", "electrical", 0, 10+i, t0+sec*1000, "residual_current_ma", 356.0)
	}
	// Bad input, each rejected and counted.
	bad := map[string]int{"malformed": 0, "unknown_device": 0, "not_finite": 0, "unknown_metric": 0, "out_of_range": 0}
	pub.raw("fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":`)
	bad["malformed"]++
	pub.raw("fw/v1/up/ghost/telemetry", `{"m":{"residual_current_ma":1}}`)
	bad["unknown_device"]++
	bad["unknown_device"]++ // the ghost in the batch
	pub.raw("fw/v1/up/el-1/telemetry", `{"m":{"residual_current_ma":"NaN"}}`)
	bad["not_finite"]++
	pub.raw("fw/v1/up/hy-1/telemetry", `{"m":{"pressure_psi":40}}`)
	bad["unknown_metric"]++
	pub.raw("fw/v1/up/hy-1/telemetry", `{"m":{"pressure_mpa":-3}}`)
	bad["out_of_range"]++

	select {
	case <-rcv.got:
	case <-time.After(20 * time.Second):
		t.Fatal("no alarm push within 20 s")
	}
	// Every message has been handled once the counters add up.
	testenv.WaitFor(t, 20*time.Second, "all messages counted", func() bool {
		m := scrape(t, s.httpURL()+"/metrics")
		if m["firewatch_ingest_readings_total"] != float64(len(want)) {
			return false
		}
		for reason, n := range bad {
			if m[`firewatch_ingest_rejected_total{reason="`+reason+`"}`] != float64(n) {
				return false
			}
		}
		return true
	})
	var list struct{ Alarms []alarms.Alarm }
	getJSON(t, s.httpURL()+"/api/v1/alarms", &list)
	if len(list.Alarms) != 1 || list.Alarms[0].Rule != "electrical.residual_current.alarm" || list.Alarms[0].Device != "el-1" {
		t.Fatalf("GET /api/v1/alarms = %+v, want the one residual-current alarm of el-1", list.Alarms)
	}
	// The station acknowledges and resolves it: its response times go to
	// InfluxDB (alarm_response).
	testenv.WaitFor(t, 20*time.Second, "the alarm pushed", func() bool {
		as, err := s.alarms.List(context.Background(), alarms.Filter{Device: "el-1"})
		return err == nil && len(as) == 1 && as[0].State == alarms.StatePushed
	})
	for _, to := range []alarms.State{alarms.StateAcknowledged, alarms.StateResolved} {
		if _, err := s.alarms.Transition(context.Background(), list.Alarms[0].ID, to, "e2e", ""); err != nil {
			t.Fatal(err)
		}
	}
	// The resolved push reaches the receiver before the service stops: a
	// stop cancels a delivery still under way (it is sent again at the next
	// start), which under load made this test see one push.
	testenv.WaitFor(t, 20*time.Second, "the resolved push", func() bool { return len(rcv.all()) >= 2 })
	stop() // flushes InfluxDB

	pushes := rcv.all()
	if len(pushes) != 2 || pushes[1].body["transition"] != "resolved" {
		t.Fatalf("receiver got %d pushes, want exactly 2: raised, then resolved by the station", len(pushes))
	}
	p := pushes[0]
	if p.sig != nil {
		t.Errorf("push signature: %v", p.sig)
	}
	if p.path != "/dispatch/st-tanxi" {
		t.Errorf("push went to %s, want the covering station's endpoint", p.path)
	}
	dev, _ := p.body["device"].(map[string]any)
	grid, _ := p.body["grid"].(map[string]any)
	if dev["id"] != "el-1" || grid["village"] != "450204002003" || p.body["severity"] != "alarm" || p.body["transition"] != "raised" {
		t.Errorf("push body: device %v, grid %v, severity %v, transition %v", dev["id"], grid["village"], p.body["severity"], p.body["transition"])
	}
	if msg, _ := p.body["message"].(string); !strings.Contains(msg, "剩余电流") || !strings.Contains(msg, "356") {
		t.Errorf("dispatcher message %q does not say what was measured", msg)
	}

	// Every accepted reading is in InfluxDB with its tags, and nothing else.
	rows := db.Flux(t, `from(bucket: "`+db.Bucket+`") |> range(start: -2h) |> filter(fn: (r) => r._measurement != "alarms" and r._measurement != "alarm_response")`)
	type key struct {
		m, dev, field, ch string
		ms                int64
	}
	got := map[key]map[string]string{}
	for _, r := range rows {
		ts, err := time.Parse(time.RFC3339Nano, r["_time"])
		if err != nil {
			t.Fatalf("row time %q: %v", r["_time"], err)
		}
		got[key{r["_measurement"], r["device"], r["_field"], r["ch"], ts.UnixMilli()}] = r
	}
	for _, w := range want {
		ch := ""
		if w.ch > 0 {
			ch = strconv.Itoa(w.ch)
		}
		r, ok := got[key{w.measurement, w.device, w.field, ch, w.ms}]
		if !ok {
			t.Errorf("reading %+v not in InfluxDB", w)
			continue
		}
		v, _ := strconv.ParseFloat(r["_value"], 64)
		if math.Abs(v-w.value) > 1e-9 || r["county"] != "450204" || r["town"] != "450204002" || r["village"] != "450204002003" || r["kind"] != w.measurement {
			t.Errorf("reading %+v stored as %v", w, r)
		}
	}
	if len(rows) != len(want) {
		t.Errorf("InfluxDB holds %d readings, want %d", len(rows), len(want))
	}
	ann := db.Flux(t, `from(bucket: "`+db.Bucket+`") |> range(start: -2h) |> filter(fn: (r) => r._measurement == "alarms" and r._field == "value")`)
	states := map[string]bool{}
	for _, a := range ann {
		if a["device"] != "el-1" || a["severity"] != "alarm" {
			t.Errorf("alarm annotation in InfluxDB: %v", a)
		}
		states[a["state"]] = true
	}
	if len(ann) != 3 || !states["raised"] || !states["acknowledged"] || !states["resolved"] {
		t.Errorf("alarm annotations in InfluxDB: %v, want raised, acknowledged and resolved", ann)
	}
	resp := db.Flux(t, `from(bucket: "`+db.Bucket+`") |> range(start: -2h) |> filter(fn: (r) => r._measurement == "alarm_response")`)
	fields := map[string]string{}
	for _, r := range resp {
		if r["device"] != "el-1" || r["station"] != "st-tanxi" || r["outcome"] != "resolved" || r["village"] != "450204002003" {
			t.Errorf("response point %v", r)
		}
		fields[r["_field"]] = r["_value"]
	}
	for _, f := range []string{"alarm_id", "device_to_raised_s", "pushed_s", "acknowledged_s", "closed_s", "responded_in_time"} {
		if fields[f] == "" {
			t.Errorf("response point lacks %s: %v", f, fields)
		}
	}
	if fields["arrived_s"] != "" || fields["responded_in_time"] != "1" {
		t.Errorf("response point fields %v: want no arrival and responded in time", fields)
	}
}

// runService starts firewatch in process with cfg, logging at level and
// above into the test's log, and waits until it has subscribed to MQTT. It
// stops when the test ends; stop stops it earlier (flushing InfluxDB) and
// reports run's error. Stopping is bounded: a firewatch that does not stop
// fails the test instead of hanging it.
func runService(t *testing.T, cfg *Config, level slog.Level) (s *service, stop func()) {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	s, err := newService(cfg, slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level})))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("run: %v", err)
				}
			case <-time.After(20 * time.Second):
				t.Error("firewatch did not stop within 20 s")
			}
		})
	}
	t.Cleanup(stop)
	select {
	case <-s.source.Ready():
	case <-time.After(20 * time.Second):
		t.Fatal("firewatch did not subscribe within 20 s")
	}
	return s, stop
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// publisher publishes QoS 1 messages and waits for each PUBACK.
type publisher struct {
	t *testing.T
	c paho.Client
}

func newPublisher(t *testing.T, url string) *publisher {
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("e2e-pub").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect publisher: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return &publisher{t, c}
}

func (p *publisher) raw(topic, payload string) {
	tok := p.c.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		p.t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

func (p *publisher) json(topic string, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		p.t.Fatal(err)
	}
	p.raw(topic, string(b))
}

// scrape reads a Prometheus text exposition into "name{labels}" → value.
func scrape(t *testing.T, url string) map[string]float64 {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

func getJSON(t *testing.T, url string, v any) {
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s: %s", url, resp.Status, b)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
