package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/rules"
)

var testSecret = []byte("test-secret-不要外传")

// wait is the deadline of every poll and receive in these tests: generous,
// since -race and SQLite fsyncs are slow, and never reached when all is well.
const wait = 15 * time.Second

const ledgerYAML = `
places:
  "450204": 柳州市柳南区
  "450204001": 潭西街道
  "450204001001": 某村
stations:
  - id: st-tanxi
    name: 潭西街道微型消防站
    grids: ["450204001"]
    endpoint: %s
  - id: st-other
    name: 另一微型消防站
    grids: ["450204002"]
    endpoint: %s
devices:
  - id: el-450204-0001
    kind: electrical
    model: ACREL-ARCM300
    grid: "450204001001"
    address: 和平路12号
    lat: 24.301
    lon: 109.392
    unit: 某厂
  - id: sm-450204-0002
    kind: smoke
    model: JTY-GD-H361
    grid: "450204001001"
    address: 和平路14号
    unit: 某村民委员会
  - id: hy-450204-0003
    kind: hydrant
    model: HP-01
    grid: "450204002001"
    address: 建设路1号
  - id: ch-450204-0004
    kind: charger
    model: CC-10
    grid: "450204001001"
    address: 和平路16号车棚
    unit: 某物业
`

// Device indexes in the test ledger.
const (
	devElectrical devices.Index = iota
	devSmoke
	devHydrant
	devCharger
)

func testLedger(t testing.TB, tanxi, other string) *devices.Ledger {
	t.Helper()
	l, err := devices.ParseLedger("test.yaml", fmt.Appendf(nil, ledgerYAML, tanxi, other))
	if err != nil {
		t.Fatalf("ledger: %v", err)
	}
	return l
}

func metric(t testing.TB, k devices.Kind, name string) devices.Metric {
	t.Helper()
	m, ok := devices.MetricByName(k, name)
	if !ok {
		t.Fatalf("no metric %s for %s", name, k)
	}
	return m
}

type testRules struct {
	residual, cableTemp, smoke, pressure, slotTemp *rules.Rule
}

func newTestRules(t testing.TB) testRules {
	return testRules{
		residual: &rules.Rule{ID: "elec-residual-alarm", Kind: devices.KindElectrical,
			Metric: metric(t, devices.KindElectrical, "residual_current_ma"), Op: rules.OpAbove,
			Severity: rules.SeverityAlarm, Threshold: 300, Clear: 250, For: 10 * time.Second},
		cableTemp: &rules.Rule{ID: "elec-cable-temp-alarm", Kind: devices.KindElectrical,
			Metric: metric(t, devices.KindElectrical, "cable_temp_c"), Op: rules.OpAbove,
			Severity: rules.SeverityAlarm, Threshold: 70, Clear: 65, For: 10 * time.Second},
		smoke: &rules.Rule{ID: "smoke-fire", Kind: devices.KindSmoke,
			Metric: metric(t, devices.KindSmoke, "smoke_alarm"), Op: rules.OpEvent, Severity: rules.SeverityFire},
		pressure: &rules.Rule{ID: "hydrant-pressure-low", Kind: devices.KindHydrant,
			Metric: metric(t, devices.KindHydrant, "pressure_mpa"), Op: rules.OpBelow,
			Severity: rules.SeverityAlarm, Threshold: 0.10, Clear: 0.12, For: time.Minute},
		slotTemp: &rules.Rule{ID: "charger-slot-temp-alarm", Kind: devices.KindCharger,
			Metric: metric(t, devices.KindCharger, "slot_temp_c"), Op: rules.OpAbove,
			Severity: rules.SeverityAlarm, Threshold: 65, Action: "cut_power"},
	}
}

// deviceTime is 2026-11-23 18:02:11 CST, the device clock of the examples.
var deviceTime = time.Date(2026, 11, 23, 18, 2, 11, 0, cst).UnixMilli()

func raise(r *rules.Rule, dev devices.Index, ch uint8, value float64, heldMs int64) rules.Event {
	return rules.Event{Rule: r, Device: dev, Channel: ch, Transition: rules.Raise, Value: value,
		Since: deviceTime - heldMs, Time: deviceTime, Seq: 42}
}

func clearEv(r *rules.Rule, dev devices.Index, ch uint8, value float64) rules.Event {
	return rules.Event{Rule: r, Device: dev, Channel: ch, Transition: rules.Clear, Value: value,
		Since: deviceTime + 60_000, Time: deviceTime + 65_000, Seq: 43}
}

// request is one request a receiver got.
type request struct {
	push   Push
	body   []byte
	header http.Header
	status int // what the receiver answered
}

// receiver is a dispatch webhook on 127.0.0.1 that checks signatures and
// reports every request on a channel.
type receiver struct {
	t    testing.TB
	srv  *httptest.Server
	reqs chan request

	mu     sync.Mutex
	n      int
	status func(n int) int // status for the n-th request (1-based)
}

func newReceiver(t testing.TB) *receiver {
	rc := &receiver{t: t, reqs: make(chan request, 1000), status: func(int) int { return http.StatusOK }}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) setStatus(f func(n int) int) {
	rc.mu.Lock()
	rc.status = f
	rc.mu.Unlock()
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		rc.t.Errorf("receiver: read body: %v", err)
		return
	}
	if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
		rc.t.Errorf("receiver: got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
	}
	if err := Verify(testSecret, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignature)); err != nil {
		rc.t.Errorf("receiver: %v", err)
	}
	to := r.Header.Get(HeaderRecipient)
	if err := VerifyFor([][]byte{PushKey(testSecret, to)}, to, r.Header.Get(HeaderTimestamp), body, r.Header.Get(HeaderSignatureV2)); err != nil {
		rc.t.Errorf("receiver: v2 for %q: %v", to, err)
	}
	var p Push
	if err := json.Unmarshal(body, &p); err != nil {
		rc.t.Errorf("receiver: decode push: %v", err)
	}
	if k := r.Header.Get(HeaderIdempotencyKey); k != p.IdempotencyKey {
		rc.t.Errorf("receiver: Idempotency-Key header %q, body %q", k, p.IdempotencyKey)
	}
	rc.mu.Lock()
	rc.n++
	status := rc.status(rc.n)
	rc.mu.Unlock()
	w.WriteHeader(status)
	rc.reqs <- request{push: p, body: body, header: r.Header.Clone(), status: status}
}

// next returns the next request, failing the test if none comes in time.
func (rc *receiver) next(t testing.TB) request {
	t.Helper()
	select {
	case r := <-rc.reqs:
		return r
	case <-time.After(wait):
		t.Fatalf("receiver %s: no request within %s", rc.srv.URL, wait)
		return request{}
	}
}

// running is a Manager whose Run goroutine the test owns.
type running struct {
	*Manager
	stop func() error // cancels Run, waits for it, closes the store
}

func testConfig(t testing.TB) Config {
	return Config{
		DBPath:      testDB(t),
		Secret:      testSecret,
		RetryMin:    5 * time.Millisecond,
		RetryMax:    20 * time.Millisecond,
		PushTimeout: 5 * time.Second,
		Logger:      slog.New(slog.DiscardHandler),
		// Most tests raise several alarms for one station at once; the
		// storm tests turn grouping on.
		StormWindow: -1,
		// Robot tests count robot messages; the digest tests turn digests on.
		Digest: DigestOff,
	}
}

func start(t testing.TB, cfg Config, l *devices.Ledger) *running {
	t.Helper()
	m, err := NewManager(cfg, l)
	if err != nil {
		t.Fatalf("NewManager: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	var once sync.Once
	var stopErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			stopErr = <-done
			if err := m.Close(); err != nil && stopErr == nil {
				stopErr = err
			}
		})
		return stopErr
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("stop manager: %v", err)
		}
	})
	return &running{Manager: m, stop: stop}
}

// poll calls f until it returns true, failing the test at the deadline.
func poll(t testing.TB, what string, f func() bool) { testenv.WaitFor(t, wait, what, f) }

func list(t testing.TB, m *Manager, f Filter) []Alarm {
	t.Helper()
	as, err := m.List(context.Background(), f)
	if err != nil {
		t.Fatalf("List: %v", err)
	}
	return as
}

func get(t testing.TB, m *Manager, id string) Alarm {
	t.Helper()
	n, err := parseID(id)
	if err != nil {
		t.Fatal(err)
	}
	a, err := m.store.get(context.Background(), n)
	if err != nil {
		t.Fatalf("get %s: %v", id, err)
	}
	return a
}
