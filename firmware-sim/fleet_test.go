package sim_test

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	sim "github.com/firewatch-iot/firewatch/firmware-sim"
)

// msg is a payload of docs/mqtt.md, decoded strictly.
type msg struct {
	TS     *int64             `json:"ts"`
	Seq    *uint32            `json:"seq"`
	Ch     *int               `json:"ch"`
	M      map[string]float64 `json:"m"`
	Event  *string            `json:"event"`
	Active *bool              `json:"active"`
}

// reading is a decoded message with the device it came from.
type reading struct {
	dev   *devices.Device
	topic string // telemetry, event or status
	at    time.Time
	msg
}

func (r reading) active() bool { return r.Active == nil || *r.Active }

// decode checks one message against the contract and the catalog.
func decode(t *testing.T, l *devices.Ledger, now time.Time, topic string, payload []byte) reading {
	t.Helper()
	parts := strings.Split(topic, "/")
	if len(parts) != 5 || parts[0] != "fw" || parts[1] != "v1" || parts[2] != "up" {
		t.Fatalf("topic %q is not fw/v1/up/{id}/{suffix}", topic)
	}
	d, ok := l.Lookup([]byte(parts[3]))
	if !ok {
		t.Fatalf("topic %q: unknown device", topic)
	}
	r := reading{dev: d, topic: parts[4], at: now}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.msg); err != nil {
		t.Fatalf("%s %s: %v", topic, payload, err)
	}
	if r.TS == nil || *r.TS != now.UnixMilli() {
		t.Fatalf("%s %s: ts is not the clock's Unix ms %d", topic, payload, now.UnixMilli())
	}
	if r.Seq == nil {
		t.Fatalf("%s %s: no seq", topic, payload)
	}
	switch r.topic {
	case "telemetry", "status":
		if len(r.M) == 0 || r.Event != nil || r.Active != nil {
			t.Fatalf("%s %s: want measurements only", topic, payload)
		}
		for name, v := range r.M {
			m, ok := devices.MetricByName(d.Kind, name)
			if !ok || m.Info().Event {
				t.Fatalf("%s %s: %q is not a metric of kind %s", topic, payload, name, d.Kind)
			}
			info := m.Info()
			if math.IsNaN(v) || v < info.Min || v > info.Max {
				t.Fatalf("%s %s: %s=%g outside %g…%g", topic, payload, name, v, info.Min, info.Max)
			}
			if r.Ch != nil && (*r.Ch < 1 || *r.Ch > int(info.Channels) || info.Channels == 1) {
				t.Fatalf("%s %s: ch %d not valid for %s", topic, payload, *r.Ch, name)
			}
		}
		status := r.topic == "status"
		for name := range r.M {
			if isStatus := name == "battery_pct" || name == "rssi_dbm"; isStatus != status {
				t.Fatalf("%s %s: %s on the wrong topic", topic, payload, name)
			}
		}
	case "event":
		if r.Event == nil || r.M != nil {
			t.Fatalf("%s %s: want one event", topic, payload)
		}
		m, ok := devices.MetricByName(d.Kind, *r.Event)
		if !ok || !m.Info().Event {
			t.Fatalf("%s %s: %q is not an event of kind %s", topic, payload, *r.Event, d.Kind)
		}
	default:
		t.Fatalf("topic %q: unknown suffix", topic)
	}
	return r
}

// drive runs the fleet from start for d, one message every step, and calls
// at (if not nil) before each message so that tests can start scenarios.
func drive(t *testing.T, l *devices.Ledger, f *sim.Fleet, start time.Time, d, step time.Duration, at func(now time.Time)) []reading {
	t.Helper()
	var out []reading
	buf := make([]byte, 0, 256)
	for now := start; now.Before(start.Add(d)); now = now.Add(step) {
		if at != nil {
			at(now)
		}
		topic, p := f.Next(now, buf)
		out = append(out, decode(t, l, now, topic, p))
	}
	return out
}

var t0 = time.Date(2026, 3, 1, 19, 30, 0, 0, time.FixedZone("CST", 8*3600))

// TestFleetNormal checks that a fleet without scenarios sends valid
// payloads with plausible values that cross no default rule of DOMAIN.md,
// heartbeats from every device and dense sequence numbers, over a day.
func TestFleetNormal(t *testing.T) {
	l := demoLedger(t, 300)
	f := sim.NewFleet(l, 1)
	// Five minutes at 100 messages/s, then a day at one message every 2 s
	// with hourly heartbeats to sweep the daily load curve.
	rs := drive(t, l, f, t0, 5*time.Minute, 10*time.Millisecond, nil)
	f.StatusInterval = time.Hour
	rs = append(rs, drive(t, l, f, t0.Add(5*time.Minute), 24*time.Hour, 2*time.Second, nil)...)

	seq := map[string]uint32{}
	status := map[string]int{}
	channels := map[string]map[int]bool{}
	for _, r := range rs {
		id := r.dev.ID
		if want := seq[id] + 1; *r.Seq != want {
			t.Fatalf("%s: seq %d, want %d", id, *r.Seq, want)
		}
		seq[id] = *r.Seq
		if r.topic == "status" {
			status[id]++
		}
		if r.Event != nil && *r.Event != "self_test" {
			t.Errorf("%s at %v: event %s in a normal fleet", id, r.at, *r.Event)
		}
		if r.Ch != nil {
			key := r.dev.Kind.String()
			if channels[key] == nil {
				channels[key] = map[int]bool{}
			}
			channels[key][*r.Ch] = true
		}
		for name, v := range r.M {
			lo, hi := normalRange(name)
			if v < lo || v > hi {
				t.Errorf("%s at %v: %s=%g outside the normal %g…%g", id, r.at.Format(time.TimeOnly), name, v, lo, hi)
			}
		}
	}
	for _, d := range l.Devices {
		if status[d.ID] < 3 {
			t.Errorf("%s (%s) sent %d status heartbeats", d.ID, d.Kind, status[d.ID])
		}
	}
	for kind, n := range map[string]int{"electrical": 4, "charger": 10} {
		if len(channels[kind]) != n {
			t.Errorf("%s reported channels %v, want 1…%d", kind, channels[kind], n)
		}
	}
}

// normalRange is where a healthy device's values stay: inside the ranges
// of the brief and clear of every default rule of DOMAIN.md.
func normalRange(metric string) (lo, hi float64) {
	switch metric {
	case "residual_current_ma":
		return 20, 150 // warning at 200
	case "cable_temp_c":
		return 20, 46 // warning at 60
	case "voltage_v":
		return 215, 225 // warning outside 198–242
	case "phase_current_a":
		return 0, 60 // below every rated current (≥ 32 A × 0.92 … 63 A)
	case "pressure_mpa":
		return 0.25, 0.40 // warning below 0.14
	case "slot_temp_c":
		return 18, 46 // warning at 55, 45 at most while charging
	case "slot_current_a":
		return 0, 3.5
	case "slot_power_w":
		return 0, 800
	case "battery_pct":
		return 20, 100
	case "rssi_dbm":
		return -120, -50
	}
	return math.Inf(-1), math.Inf(1)
}

func TestFleetDeterministic(t *testing.T) {
	l := demoLedger(t, 50)
	run := func(seed int64) []string {
		f := sim.NewFleet(l, seed)
		sc, err := sim.ParseScenario("charger-overheat")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		buf := make([]byte, 0, 256)
		for i := 0; i < 5000; i++ {
			now := t0.Add(time.Duration(i) * 20 * time.Millisecond)
			if i == 1000 {
				if _, err := f.Start(sc, now); err != nil {
					t.Fatal(err)
				}
			}
			topic, p := f.Next(now, buf)
			out = append(out, topic+" "+string(p))
		}
		return out
	}
	a, b, c := run(1), run(1), run(2)
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("message %d differs for the same seed:\n%s\n%s", i, a[i], b[i])
		}
	}
	same := 0
	for i := range a {
		if a[i] == c[i] {
			same++
		}
	}
	if same == len(a) {
		t.Error("different seeds give the same messages")
	}
}

func TestFleetEmpty(t *testing.T) {
	l, err := devices.ParseLedger("empty.yaml", []byte("devices: []\n"))
	if err != nil {
		t.Fatal(err)
	}
	if topic, p := sim.NewFleet(l, 1).Next(t0, nil); topic != "" || len(p) != 0 {
		t.Errorf("empty fleet: %q %q", topic, p)
	}
}

func BenchmarkFleetNext(b *testing.B) {
	l := demoLedger(b, 300)
	f := sim.NewFleet(l, 1)
	buf := make([]byte, 0, 256)
	now := t0
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(10 * time.Microsecond)
		_, buf = f.Next(now, buf)
	}
}
