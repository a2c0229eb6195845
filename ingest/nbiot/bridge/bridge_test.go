package bridge

import (
	"context"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/ingest/nbiot"
)

const testLedger = `
stations:
  - {id: st-1, name: 潭西街道微型消防站, grids: ["450204002"], endpoint: "http://127.0.0.1:1/d"}
devices:
  - id: sm-bin
    kind: smoke
    grid: "450204002003"
    nbiot: {imei: "869975031234567", product: NB-SMOKE-BIN}
  - id: sm-tm
    kind: smoke
    grid: "450204002003"
    nbiot: {platform_id: "523456791", product: NB-SMOKE-TM}
  - id: sm-gb
    kind: smoke
    grid: "450204002003"
    nbiot: {serial: "ABCD01250601SN00000010A1F2E"}
  - id: el-nb
    kind: electrical
    grid: "450204002003"
    nbiot: {imei: "869975031234569", product: NB-EFM}
  - id: el-plain
    kind: electrical
    grid: "450204002003"
`

func ledger(t testing.TB, text string) *devices.Ledger {
	t.Helper()
	l, err := devices.ParseLedger("ledger.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// recorder is the pipeline behind HandleFunc: it records topic and payload.
type recorder struct {
	mu   sync.Mutex
	msgs []string
	fail error
}

func (r *recorder) handle(topic string, payload []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.msgs = append(r.msgs, topic+" "+string(payload))
	return nil
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.msgs
	r.msgs = nil
	return m
}

func newBridge(t *testing.T, cfg Config, rec *recorder) (*Bridge, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := New(cfg, Options{Ledger: ledger(t, testLedger), Handle: rec.handle, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return b, reg
}

func unhex(t *testing.T, s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var at = time.UnixMilli(1796118000123)

// TestSubmitMessages: reports become messages of the MQTT contract on the
// bound device's own topics, decoded by its product codec.
func TestSubmitMessages(t *testing.T) {
	cases := []struct {
		name string
		r    nbiot.Report
		want []string
	}{
		{"binary smoke frame by IMEI", nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeData, Time: at,
			Device: nbiot.DeviceKey{IMEI: "869975031234567"}, Payload: unhex(t, "AA 01 01 00 5A FF A6 00 08")},
			[]string{
				`fw/v1/up/sm-bin/telemetry {"ts":1796118000123,"m":{"battery_pct":90,"rssi_dbm":-90}}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"smoke_alarm"}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"fault","active":false}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"low_battery","active":false}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"tamper","active":false}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"silence","active":false}`,
				`fw/v1/up/sm-bin/event {"ts":1796118000123,"event":"self_test","active":false}`,
			}},
		{"thing model by platform id", nbiot.Report{Platform: nbiot.PlatformOneNET, Type: nbiot.TypeData, Time: at,
			Device: nbiot.DeviceKey{PlatformID: "523456791"}, JSON: []byte(`{"Alarm_Status":2}`)},
			[]string{`fw/v1/up/sm-tm/event {"ts":1796118000123,"event":"fault"}`}},
		{"electrical frame: one message per channel, a sensor not connected is null",
			nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeData, Time: at, Device: nbiot.DeviceKey{IMEI: "869975031234569"},
				Payload: unhex(t, "68 02 01 F4 02 3A 7F FF 00 FA FF F6 03 E8 00 00 00 64 08 98 08 A2 08 8E 01 B5")},
			[]string{
				`fw/v1/up/el-nb/telemetry {"ts":1796118000123,"m":{"residual_current_ma":500,"rssi_dbm":-75}}`,
				`fw/v1/up/el-nb/telemetry {"ts":1796118000123,"ch":1,"m":{"cable_temp_c":57,"phase_current_a":10,"voltage_v":220}}`,
				`fw/v1/up/el-nb/telemetry {"ts":1796118000123,"ch":2,"m":{"cable_temp_c":null,"phase_current_a":0,"voltage_v":221}}`,
				`fw/v1/up/el-nb/telemetry {"ts":1796118000123,"ch":3,"m":{"cable_temp_c":25,"phase_current_a":1,"voltage_v":219}}`,
				`fw/v1/up/el-nb/telemetry {"ts":1796118000123,"ch":4,"m":{"cable_temp_c":-1}}`,
				`fw/v1/up/el-nb/event {"ts":1796118000123,"event":"fault"}`,
			}},
		{"online is a heartbeat", nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypePresence, Presence: nbiot.Online,
			Time: at, Device: nbiot.DeviceKey{IMEI: "869975031234567"}},
			[]string{`fw/v1/up/sm-bin/status {"ts":1796118000123}`}},
		{"offline is left to liveness", nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypePresence, Presence: nbiot.Offline,
			Time: at, Device: nbiot.DeviceKey{IMEI: "869975031234567"}}, nil},
		{"no time: the receive time", nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypePresence, Presence: nbiot.Online,
			Device: nbiot.DeviceKey{IMEI: "869975031234567"}},
			[]string{`fw/v1/up/sm-bin/status {}`}},
		{"command result: counted only", nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeCommand,
			Device: nbiot.DeviceKey{IMEI: "869975031234567"}, Command: &nbiot.Command{ID: "1", Result: "DELIVERED"}}, nil},
		{"payload of a device without codec: heartbeat", nbiot.Report{Platform: nbiot.PlatformGB45839, Type: nbiot.TypeData, Time: at,
			Device: nbiot.DeviceKey{Serial: "ABCD01250601SN00000010A1F2E"}, JSON: []byte(`{"x":1}`)},
			[]string{`fw/v1/up/sm-gb/status {"ts":1796118000123}`}},
	}
	rec := &recorder{}
	b, _ := newBridge(t, Config{}, rec)
	for _, c := range cases {
		if err := b.Submit(context.Background(), []nbiot.Report{c.r}); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		got := rec.take()
		if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
}

// TestSubmitStatus: a GB/T 45839 status_info as its decoder makes it; a
// negative signalStrength is taken as dBm, a positive one (a level, a CSQ)
// is not stored as one.
func TestSubmitStatus(t *testing.T) {
	rec := &recorder{}
	b, _ := newBridge(t, Config{}, rec)
	smoke, _ := devices.MetricByName(devices.KindSmoke, "smoke_alarm")
	batt, _ := devices.MetricByName(devices.KindSmoke, "battery_pct")
	fire := nbiot.Report{Platform: nbiot.PlatformGB45839, Type: nbiot.TypeStatus, Time: at, Device: nbiot.DeviceKey{Serial: "ABCD01250601SN00000010A1F2E"},
		Values: []nbiot.Value{{Metric: smoke, Value: 1}, {Metric: batt, Value: 15}}, Signal: -101, SignalSet: true}
	level := fire
	level.Values = []nbiot.Value{{Metric: batt, Value: 15}}
	level.Signal = 18
	disabled := nbiot.Report{Platform: nbiot.PlatformGB45839, Type: nbiot.TypeStatus, Time: at, Device: fire.Device, Disabled: true}
	if err := b.Submit(context.Background(), []nbiot.Report{fire, level, disabled}); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`fw/v1/up/sm-gb/telemetry {"ts":1796118000123,"m":{"battery_pct":15,"rssi_dbm":-101}}`,
		`fw/v1/up/sm-gb/event {"ts":1796118000123,"event":"smoke_alarm"}`,
		`fw/v1/up/sm-gb/telemetry {"ts":1796118000123,"m":{"battery_pct":15}}`,
		`fw/v1/up/sm-gb/status {"ts":1796118000123}`,
	}
	if got := rec.take(); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if n := testutil.ToFloat64(b.met.reports.WithLabelValues("gb45839", resultDisabled)); n != 1 {
		t.Errorf("disabled counted %v", n)
	}
}

// TestKindMismatch: a value of another kind's catalog (a codec or peer
// sending smoke events for an electrical monitor) is dropped and counted;
// the message keeps the rest.
func TestKindMismatch(t *testing.T) {
	rec := &recorder{}
	b, _ := newBridge(t, Config{}, rec)
	smoke, _ := devices.MetricByName(devices.KindSmoke, "smoke_alarm")
	batt, _ := devices.MetricByName(devices.KindSmoke, "battery_pct")
	rc, _ := devices.MetricByName(devices.KindElectrical, "residual_current_ma")
	r := nbiot.Report{Platform: nbiot.PlatformGB45839, Type: nbiot.TypeStatus, Time: at, Device: nbiot.DeviceKey{IMEI: "869975031234569"},
		Values: []nbiot.Value{{Metric: smoke, Value: 1}, {Metric: batt, Value: 50}, {Metric: rc, Value: 30}}}
	if err := b.Submit(context.Background(), []nbiot.Report{r}); err != nil {
		t.Fatal(err)
	}
	want := `fw/v1/up/el-nb/telemetry {"ts":1796118000123,"m":{"residual_current_ma":30}}`
	if got := rec.take(); len(got) != 1 || got[0] != want {
		t.Errorf("got %q", got)
	}
	if n := testutil.ToFloat64(b.met.reports.WithLabelValues("gb45839", resultKind)); n != 2 {
		t.Errorf("kind_mismatch counted %v, want 2", n)
	}
}

// TestSubmitFails: a pipeline failure is the platform's signal to retry;
// once Stop has begun every push is refused, and Stop waits for a push in
// the pipeline.
func TestSubmitFails(t *testing.T) {
	rec := &recorder{fail: errors.New("store down")}
	b, _ := newBridge(t, Config{}, rec)
	on := nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypePresence, Presence: nbiot.Online, Device: nbiot.DeviceKey{IMEI: "869975031234567"}}
	if err := b.Submit(context.Background(), []nbiot.Report{on}); err == nil {
		t.Fatal("a failing pipeline was not reported")
	}

	entered, release := make(chan struct{}), make(chan struct{})
	b.handle = func(string, []byte) error {
		close(entered)
		<-release
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- b.Submit(context.Background(), []nbiot.Report{on}) }()
	<-entered
	stopped := make(chan struct{})
	go func() {
		b.Stop(context.Background())
		close(stopped)
	}()
	select {
	case <-stopped:
		t.Fatal("Stop returned while a push was in the pipeline")
	case <-time.After(50 * time.Millisecond):
		// Not a synchronisation: a bounded look for a Stop that does not wait.
	}
	close(release)
	if err := <-done; !errors.Is(err, ErrStopping) {
		t.Errorf("a push whose commit overlapped Stop: %v, want ErrStopping (a retry, never a 200 that may be lost)", err)
	}
	<-stopped
	if err := b.Submit(context.Background(), []nbiot.Report{on}); !errors.Is(err, ErrStopping) {
		t.Errorf("push after Stop: %v", err)
	}
}

// TestPending: unknown devices and Install_info become pending entries,
// kept in a file across restarts; once the ledger binds a device its
// entry is gone.
func TestPending(t *testing.T) {
	file := filepath.Join(t.TempDir(), "pending.json")
	rec := &recorder{}
	b, _ := newBridge(t, Config{PendingFile: file, Pending: 2}, rec)
	unknown := nbiot.Report{Platform: nbiot.PlatformCTWing, Type: nbiot.TypeData, Device: nbiot.DeviceKey{IMEI: "869975039999999", PlatformID: "dev-x"},
		Tenant: "2000033629", Product: "15298770", Payload: []byte{1}}
	install := nbiot.Report{Platform: nbiot.PlatformGB45839, Type: nbiot.TypeInstall,
		Install: &nbiot.Install{Serial: "ABCD01250601SN00000020A1F2E", DeviceAddress: "鹅山路30号", Mobile: "13900000000"}}
	third := unknown
	third.Device = nbiot.DeviceKey{IMEI: "869975038888888"}
	for _, r := range []nbiot.Report{unknown, unknown, install, third} {
		if err := b.Submit(context.Background(), []nbiot.Report{r}); err != nil {
			t.Fatal(err)
		}
	}
	if m := rec.take(); len(m) != 0 {
		t.Errorf("pending reports reached the pipeline: %q", m)
	}
	p := b.Pending()
	if len(p) != 2 || p[0].IMEI != "869975039999999" || p[0].Reports != 2 || p[0].Tenant != "2000033629" ||
		p[1].Install == nil || p[1].Serial != "ABCD01250601SN00000020A1F2E" {
		t.Fatalf("pending %+v", p)
	}
	if n := testutil.ToFloat64(b.met.reports.WithLabelValues("ctwing", resultFull)); n != 1 {
		t.Errorf("pending_full %v", n)
	}
	// A restart keeps them; binding the first device in the ledger drops its entry.
	bound := strings.Replace(testLedger, "  - id: el-plain\n", "  - id: el-plain\n    nbiot: {imei: \"869975039999999\"}\n", 1)
	b2, err := New(Config{PendingFile: file}, Options{Ledger: ledger(t, bound), Handle: rec.handle})
	if err != nil {
		t.Fatal(err)
	}
	if p := b2.Pending(); len(p) != 1 || p[0].Install == nil || p[0].Install.DeviceAddress != "鹅山路30号" {
		t.Errorf("pending after restart with the device bound: %+v", p)
	}
	if b, err := os.ReadFile(file); err != nil || !strings.Contains(string(b), `"deviceAddress": "鹅山路30号"`) {
		t.Errorf("pending file: %s %v", b, err)
	}
}

// TestNewChecksBindings: a product without codec, a codec of another kind
// and a name bound twice are refused with the ledger's lines.
func TestNewChecksBindings(t *testing.T) {
	for _, c := range []struct{ ledger, want string }{
		{strings.Replace(testLedger, "NB-SMOKE-BIN", "NB-NONE", 1), `ledger.yaml:5: device "sm-bin": nbiot product "NB-NONE" has no codec`},
		{strings.Replace(testLedger, "NB-EFM", "NB-SMOKE-TM", 1), `ledger.yaml:17: device "el-nb" of kind electrical: nbiot product "NB-SMOKE-TM" is a smoke codec`},
		{strings.Replace(testLedger, "869975031234569", "869975031234567", 1), `ledger.yaml:17: device "el-nb": nbiot imei "869975031234567" is also bound to "sm-bin" (line 5)`},
	} {
		_, err := New(Config{}, Options{Ledger: ledger(t, c.ledger), Handle: (&recorder{}).handle})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("got %v, want %s", err, c.want)
		}
	}
}

func TestBucket(t *testing.T) {
	t0 := time.Unix(0, 0)
	tb := &bucket{rate: 2, tokens: 2, last: t0}
	got := []bool{tb.take(t0), tb.take(t0), tb.take(t0), tb.take(t0.Add(500 * time.Millisecond)), tb.take(t0.Add(500 * time.Millisecond))}
	want := []bool{true, true, false, true, false}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("take %d: %v, want %v (all %v)", i, got[i], want[i], got)
		}
	}
}
