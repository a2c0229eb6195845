package alarms

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/firewatch-iot/firewatch/rules"
)

// TestLifecycle: raise → one push; repeated raise → no push; clear → a
// cleared push.
func TestLifecycle(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL+"/hook?token=abc", rc.srv.URL+"/other")
	r := newTestRules(t)
	cfg := testConfig(t)
	transitions := make(chan Alarm, 10)
	cfg.OnTransition = func(a Alarm) { transitions <- a }
	m := start(t, cfg, l)

	before := time.Now().Add(-time.Second)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	got := rc.next(t)
	if got.status != http.StatusOK {
		t.Fatalf("status %d", got.status)
	}
	raisedAt, err := time.Parse(timeLayout, got.push.RaisedAt)
	if err != nil || raisedAt.Before(before) || raisedAt.After(time.Now()) {
		t.Errorf("raised_at %q: not a recent RFC 3339 time (%v)", got.push.RaisedAt, err)
	}
	got.push.RaisedAt = ""
	want := Push{
		Version: "v1", IdempotencyKey: "alm-000001-raised", AlarmID: "alm-000001", Transition: "raised",
		Severity: "alarm", SeverityZH: "报警", Rule: "elec-residual-alarm",
		Device: PushDevice{ID: "el-450204-0001", Kind: "electrical", KindZH: "电气火灾监控探测器", Model: "ACREL-ARCM300",
			Addr: "和平路12号", Lat: 24.301, Lon: 109.392, Unit: "某厂"},
		Grid:    PushGrid{Village: "450204001001", Town: "450204001", County: "450204", Place: "柳州市柳南区潭西街道某村"},
		Station: PushStation{ID: "st-tanxi", Name: "潭西街道微型消防站"},
		Metric:  "residual_current_ma", MetricZH: "剩余电流", Unit: "mA", Op: "above",
		Value: 356, Threshold: 300, HeldS: 12, DeviceTime: "2026-11-23T18:02:11.000+08:00",
		Message: "【报警】柳州市柳南区潭西街道某村 和平路12号 电气火灾监控探测器 el-450204-0001 剩余电流 356.0 mA，超过报警值 300 mA 已持续 12 秒（设备时间 2026-11-23 18:02:11）。责任单位：某厂。就近微型消防站：潭西街道微型消防站。",
	}
	if got.push != want {
		t.Errorf("push\n got %+v\nwant %+v", got.push, want)
	}
	if k := got.header.Get(HeaderIdempotencyKey); k != "alm-000001-raised" {
		t.Errorf("Idempotency-Key %q", k)
	}
	if ts, err := strconv.ParseInt(got.header.Get(HeaderTimestamp), 10, 64); err != nil || time.Since(time.Unix(ts, 0)) > time.Minute {
		t.Errorf("timestamp header %q is not recent Unix seconds", got.header.Get(HeaderTimestamp))
	}
	if a := <-transitions; a.ID != "alm-000001" || a.State != StateRaised {
		t.Errorf("OnTransition got %s %s", a.ID, a.State)
	}

	// Raised again while open: counted, not pushed. The cleared push must be
	// the very next request: pushes to one endpoint arrive in order.
	m.Submit(raise(r.residual, devElectrical, 0, 380, 15_000))
	m.Submit(clearEv(r.residual, devElectrical, 0, 240))
	got = rc.next(t)
	if got.push.IdempotencyKey != "alm-000001-cleared" || got.push.Transition != "cleared" || got.push.Value != 240 {
		t.Fatalf("after a repeat and a clear got %s value %v, want alm-000001-cleared", got.push.IdempotencyKey, got.push.Value)
	}
	if got.push.ClearedAt == "" {
		t.Error("cleared push without cleared_at")
	}
	if a := <-transitions; a.ID != "alm-000001" || a.State != StateAutoCleared {
		t.Errorf("OnTransition got %s %s", a.ID, a.State)
	}

	as := list(t, m.Manager, Filter{})
	if len(as) != 1 {
		t.Fatalf("%d alarms, want 1", len(as))
	}
	a := as[0]
	if a.State != StateAutoCleared || a.Repeats != 1 || a.ClearedAt == nil || a.ClearValue == nil || *a.ClearValue != 240 {
		t.Errorf("alarm %+v", a)
	}

	// A raise after the clear is a new alarm.
	m.Submit(raise(r.residual, devElectrical, 0, 400, 10_000))
	if got := rc.next(t); got.push.IdempotencyKey != "alm-000002-raised" {
		t.Errorf("got %s, want alm-000002-raised", got.push.IdempotencyKey)
	}
}

// TestFireNotAutoClosed: a fire goes to the station and the brigade, and a
// clear does not close it.
func TestFireNotAutoClosed(t *testing.T) {
	station, brigade := newReceiver(t), newReceiver(t)
	l := testLedger(t, station.srv.URL, station.srv.URL+"/other")
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.BrigadeEndpoint = brigade.srv.URL + "/119"
	m := start(t, cfg, l)

	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	for name, rc := range map[string]*receiver{"station": station, "brigade": brigade} {
		got := rc.next(t)
		if got.push.IdempotencyKey != "alm-000001-raised" || got.push.Severity != "fire" || got.push.SeverityZH != "火警" {
			t.Errorf("%s got %s %s", name, got.push.IdempotencyKey, got.push.Severity)
		}
	}

	m.Submit(clearEv(r.smoke, devSmoke, 0, 0))
	poll(t, "condition_ended_at", func() bool { return list(t, m.Manager, Filter{})[0].ConditionEndedAt != nil })
	a := get(t, m.Manager, "alm-000001")
	if !a.Open || (a.State != StateRaised && a.State != StatePushed) || a.ClearedAt != nil {
		t.Errorf("fire alarm after clear: state %s cleared_at %v; want still open", a.State, a.ClearedAt)
	}
	if len(a.Pushes) != 2 {
		t.Errorf("fire alarm has %d pushes, want 2 (raised to station and brigade): %+v", len(a.Pushes), a.Pushes)
	}

	// The smoke comes back: the open fire counts it, no new alarm, no push.
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	poll(t, "repeat", func() bool { return list(t, m.Manager, Filter{})[0].Repeats == 1 })
	a = get(t, m.Manager, "alm-000001")
	if a.ConditionEndedAt != nil || len(a.Pushes) != 2 {
		t.Errorf("after the smoke came back: condition_ended_at %v, %d pushes", a.ConditionEndedAt, len(a.Pushes))
	}
	// Non-fire alarms do not go to the brigade: the next station push is
	// the electrical one, and the brigade got nothing more.
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	if got := station.next(t); got.push.IdempotencyKey != "alm-000002-raised" {
		t.Errorf("station got %s, want alm-000002-raised", got.push.IdempotencyKey)
	}
	if n := len(get(t, m.Manager, "alm-000002").Pushes); n != 1 {
		t.Errorf("alarm severity push rows: %d, want 1 (station only)", n)
	}
	select {
	case got := <-brigade.reqs:
		t.Errorf("brigade got an unexpected push %s", got.push.IdempotencyKey)
	default:
	}
}

// TestRetry: a receiver failing a few times gets the push once it answers
// 2xx, with the attempts recorded.
func TestRetry(t *testing.T) {
	rc := newReceiver(t)
	rc.setStatus(func(n int) int {
		if n <= 3 {
			return http.StatusInternalServerError
		}
		return http.StatusOK
	})
	l := testLedger(t, rc.srv.URL, rc.srv.URL+"/other")
	r := newTestRules(t)
	cfg := testConfig(t)
	reg := prometheus.NewRegistry()
	cfg.Registerer = reg
	m := start(t, cfg, l)

	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	for i, want := range []int{500, 500, 500, 200} {
		got := rc.next(t)
		if got.status != want || got.push.IdempotencyKey != "alm-000001-raised" {
			t.Fatalf("request %d: %d %s, want %d alm-000001-raised", i+1, got.status, got.push.IdempotencyKey, want)
		}
	}
	poll(t, "delivery recorded", func() bool { return get(t, m.Manager, "alm-000001").Pushes[0].DeliveredAt != nil })
	p := get(t, m.Manager, "alm-000001").Pushes[0]
	if p.Attempts != 4 || p.LastError != "" || p.Target != "station" || p.Transition != "raised" {
		t.Errorf("push status %+v, want 4 attempts, delivered", p)
	}
	// Delivered once: the next request is the next push, not a repeat.
	m.Submit(clearEv(r.residual, devElectrical, 0, 240))
	if got := rc.next(t); got.push.IdempotencyKey != "alm-000001-cleared" {
		t.Errorf("got %s, want alm-000001-cleared", got.push.IdempotencyKey)
	}
	poll(t, "pending gauge at 0", func() bool { return gauge(t, reg, "firewatch_alarms_outbox_pending", "") == 0 })
	for _, c := range []struct {
		name, label string
		want        float64
	}{
		{"firewatch_alarms_pushes_total", "failed", 3},
		{"firewatch_alarms_pushes_total", "sent", 2},
		{"firewatch_alarms_raised_total", "alarm", 1},
		{"firewatch_alarms_cleared_total", "alarm", 1},
		{"firewatch_alarms_raised_total", "fire", 0},
	} {
		if got := gauge(t, reg, c.name, c.label); got != c.want {
			t.Errorf("%s{%s} = %v, want %v", c.name, c.label, got, c.want)
		}
	}
}

// gauge returns the value of a counter or gauge, selecting by its one label
// value (or "" when it has no label).
func gauge(t testing.TB, g prometheus.Gatherer, name, label string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label != "" && (len(m.GetLabel()) != 1 || m.GetLabel()[0].GetValue() != label) {
				continue
			}
			return value(m)
		}
	}
	t.Fatalf("metric %s{%s} not found", name, label)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	}
	return -1
}

// TestRestart: pushes pending when firewatch stops are delivered by the
// next Manager on the same database.
func TestRestart(t *testing.T) {
	tests := []struct {
		name string
		// fixLedger: the first endpoint is dead (connection refused) and
		// the operator fixes the ledger before the restart; otherwise the
		// receiver answers 503 and then comes back.
		fixLedger bool
	}{
		{name: "receiver comes back"},
		{name: "endpoint fixed in ledger", fixLedger: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rc := newReceiver(t)
			r := newTestRules(t)
			cfg := testConfig(t)
			endpoint := rc.srv.URL + "/hook"
			if tt.fixLedger {
				dead := newReceiver(t)
				endpoint = dead.srv.URL + "/hook"
				dead.srv.Close()
			} else {
				rc.setStatus(func(int) int { return http.StatusServiceUnavailable })
			}
			m1 := start(t, cfg, testLedger(t, endpoint, rc.srv.URL+"/other"))
			m1.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
			if !tt.fixLedger {
				if got := rc.next(t); got.status != http.StatusServiceUnavailable {
					t.Fatalf("status %d", got.status)
				}
			}
			poll(t, "a failed attempt", func() bool {
				a := list(t, m1.Manager, Filter{})
				return len(a) == 1 && get(t, m1.Manager, a[0].ID).Pushes[0].Attempts >= 1
			})
			if err := m1.stop(); err != nil {
				t.Fatalf("stop: %v", err)
			}

			rc.setStatus(func(int) int { return http.StatusOK })
			for len(rc.reqs) > 0 { // retries made before the stop
				<-rc.reqs
			}
			m2 := start(t, cfg, testLedger(t, rc.srv.URL+"/hook", rc.srv.URL+"/other"))
			got := rc.next(t)
			if got.status != http.StatusOK || got.push.IdempotencyKey != "alm-000001-raised" {
				t.Fatalf("after restart got %d %s", got.status, got.push.IdempotencyKey)
			}
			poll(t, "delivery recorded", func() bool { return get(t, m2.Manager, "alm-000001").Pushes[0].DeliveredAt != nil })
			if p := get(t, m2.Manager, "alm-000001").Pushes[0]; p.Attempts < 2 {
				t.Errorf("attempts %d, want at least 2", p.Attempts)
			}
		})
	}
}

// TestSlowStationDoesNotBlockOthers: a station whose webhook hangs delays
// only its own pushes.
func TestSlowStationDoesNotBlockOthers(t *testing.T) {
	release := make(chan struct{})
	hung := make(chan struct{}, 10)
	slow := newReceiver(t)
	slow.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hung <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	})
	t.Cleanup(func() { close(release) }) // runs before the servers close
	fast := newReceiver(t)
	l := testLedger(t, slow.srv.URL, fast.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.PushTimeout = time.Minute
	m := start(t, cfg, l)

	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // to the slow station
	select {
	case <-hung:
	case <-time.After(wait):
		t.Fatal("the slow station got no request")
	}
	m.Submit(raise(r.pressure, devHydrant, 0, 0.08, 60_000)) // to the other station
	if got := fast.next(t); got.push.IdempotencyKey != "alm-000002-raised" || got.push.Station.ID != "st-other" {
		t.Errorf("fast station got %s for %s", got.push.IdempotencyKey, got.push.Station.ID)
	}
}

// TestDrain: Run returns only after every event submitted before its
// context ended is in the store.
func TestDrain(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	m, err := NewManager(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	const repeats = 999
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	for range repeats {
		m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	}
	for ch := uint8(1); ch <= 8; ch++ {
		m.Submit(raise(r.cableTemp, devElectrical, ch, 75, 10_000))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.Run(ctx); err != nil {
		t.Fatalf("Run: %v", err)
	}
	as := list(t, m, Filter{})
	if len(as) != 9 {
		t.Fatalf("%d alarms stored, want 9", len(as))
	}
	if a := as[len(as)-1]; a.Rule != r.residual.ID || a.Repeats != repeats {
		t.Errorf("oldest alarm %s repeats %d, want %s with %d", a.Rule, a.Repeats, r.residual.ID, repeats)
	}
	if n := len(m.events); n != 0 {
		t.Errorf("%d events left in the queue", n)
	}
}

func TestRejectedEvents(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	m.Submit(rules.Event{Device: devElectrical, Transition: rules.Raise})         // no rule
	m.Submit(rules.Event{Rule: r.residual, Device: 99, Transition: rules.Raise})  // unknown device
	m.Submit(rules.Event{Rule: r.residual, Device: devElectrical, Transition: 9}) // unknown transition
	m.Submit(clearEv(r.residual, devElectrical, 0, 240))                          // nothing open
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))                    // fine
	if got := rc.next(t); got.push.IdempotencyKey != "alm-000001-raised" {
		t.Errorf("got %s, want alm-000001-raised", got.push.IdempotencyKey)
	}
	if n := gauge(t, prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		reg := prometheus.NewRegistry()
		reg.MustRegister(m.met.rejected)
		return reg.Gather()
	}), "firewatch_alarms_events_rejected_total", ""); n != 3 {
		t.Errorf("rejected %v, want 3", n)
	}
}

func TestNewManagerConfig(t *testing.T) {
	l := testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b")
	base := testConfig(t)
	tests := []struct {
		name string
		edit func(*Config)
	}{
		{"no db path", func(c *Config) { c.DBPath = "" }},
		{"no secret", func(c *Config) { c.Secret = nil }},
		{"retry max below min", func(c *Config) { c.RetryMin, c.RetryMax = time.Second, time.Millisecond }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := base
			tt.edit(&cfg)
			if m, err := NewManager(cfg, l); err == nil {
				m.Close()
				t.Error("NewManager accepted a bad config")
			}
		})
	}
	// Registering twice on one registry is an error, and registers nothing.
	reg := prometheus.NewRegistry()
	cfg := base
	cfg.Registerer = reg
	m, err := NewManager(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	m.Close()
	if _, err := NewManager(cfg, l); err == nil {
		t.Error("second registration on one registry succeeded")
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 500*time.Millisecond, 30*time.Second
	for failures := 1; failures < 40; failures++ {
		for range 20 {
			d := backoff(lo, hi, failures)
			if d < lo || d > hi {
				t.Fatalf("backoff(%d) = %s, outside [%s, %s]", failures, d, lo, hi)
			}
		}
	}
	if d := backoff(lo, hi, 30); d < hi/2 {
		t.Errorf("backoff after many failures = %s, want near %s", d, hi)
	}
}

func TestSubmitDoesNotAllocate(t *testing.T) {
	m := &Manager{events: make(chan rules.Event, 1)}
	ev := raise(newTestRules(t).residual, devElectrical, 0, 356, 12_000)
	if n := testing.AllocsPerRun(1000, func() {
		m.Submit(ev)
		<-m.events
	}); n != 0 {
		t.Errorf("Submit allocates %v times per call", n)
	}
}

func BenchmarkSubmit(b *testing.B) {
	m := &Manager{events: make(chan rules.Event, DefaultQueueSize)}
	done := make(chan struct{})
	go func() {
		for range m.events {
		}
		close(done)
	}()
	ev := raise(newTestRules(b).residual, devElectrical, 0, 356, 12_000)
	b.ReportAllocs()
	for b.Loop() {
		m.Submit(ev)
	}
	b.StopTimer()
	close(m.events)
	<-done
}

// messages is a slog handler that reports each record's message.
type messages chan string

func (c messages) Enabled(context.Context, slog.Level) bool { return true }
func (c messages) Handle(_ context.Context, r slog.Record) error {
	select {
	case c <- r.Message:
	default:
	}
	return nil
}
func (c messages) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c messages) WithGroup(string) slog.Handler      { return c }

// failInserts makes every insert of an alarm fail until the returned
// function is called, as a full disk would.
func failInserts(t *testing.T, m *Manager) (heal func()) {
	t.Helper()
	for _, q := range []string{
		`CREATE TABLE fail_flag (x INTEGER)`,
		`INSERT INTO fail_flag VALUES (1)`,
		`CREATE TRIGGER fail_insert BEFORE INSERT ON alarms WHEN EXISTS (SELECT 1 FROM fail_flag)
			BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
	} {
		if _, err := m.store.w.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	return func() {
		if _, err := m.store.w.Exec(`DELETE FROM fail_flag`); err != nil {
			t.Fatal(err)
		}
	}
}

func waitMessage(t *testing.T, c messages, want string) {
	t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case msg := <-c:
			if strings.Contains(msg, want) {
				return
			}
		case <-deadline:
			t.Fatalf("no log message %q", want)
		}
	}
}

// TestStoreFailure: while the store fails, events wait and are retried
// (never dropped); when it recovers they are stored and pushed. A store
// still failing at shutdown makes Run report the loss.
func TestStoreFailure(t *testing.T) {
	t.Run("recovers", func(t *testing.T) {
		rc := newReceiver(t)
		cfg := testConfig(t)
		logs := make(messages, 100)
		cfg.Logger = slog.New(logs)
		m := start(t, cfg, testLedger(t, rc.srv.URL, rc.srv.URL))
		heal := failInserts(t, m.Manager)
		r := newTestRules(t)
		m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
		m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
		waitMessage(t, logs, "failed to commit, retrying")
		heal()
		keys := []string{rc.next(t).push.IdempotencyKey, rc.next(t).push.IdempotencyKey}
		if !slices.Equal(keys, []string{"alm-000001-raised", "alm-000002-raised"}) {
			t.Errorf("after recovery got %v", keys)
		}
	})
	t.Run("gives up at shutdown", func(t *testing.T) {
		cfg := testConfig(t)
		logs := make(messages, 100)
		cfg.Logger = slog.New(logs)
		m, err := NewManager(cfg, testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		m.grace = 50 * time.Millisecond
		failInserts(t, m)
		m.Submit(raise(newTestRules(t).residual, devElectrical, 0, 356, 12_000))
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := m.Run(ctx); err == nil || !strings.Contains(err.Error(), "1 events not stored") {
			t.Errorf("Run = %v, want an error reporting the lost event", err)
		}
		waitMessage(t, logs, "LOST")
	})
}

// TestSync: once Sync returns, the events submitted before are stored; it
// returns at once without pending events and does not hang once Run has
// stopped.
func TestSync(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	m.Sync()
	for ch := uint8(1); ch <= 50; ch++ {
		m.Submit(raise(r.cableTemp, devElectrical, ch, 75, 12_000))
	}
	m.Sync()
	if n := len(list(t, m.Manager, Filter{Limit: MaxLimit})); n != 50 {
		t.Fatalf("after Sync %d alarms stored, want 50", n)
	}
	if err := m.stop(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // queued, never consumed
		m.Sync()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(wait):
		t.Fatal("Sync hangs after Run stopped")
	}
}
