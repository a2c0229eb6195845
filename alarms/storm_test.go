package alarms

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// stormLedger has n smoke detectors in one village, covered by one station.
func stormLedger(t *testing.T, n int, endpoint string) *devices.Ledger {
	var b strings.Builder
	fmt.Fprintf(&b, `places:
  "450204": 柳州市柳南区
  "450204002": 潭西街道
  "450204002003": 鹅山村
stations:
  - id: st-tanxi
    name: 潭西街道微型消防站
    grids: ["450204002"]
    endpoint: %s
devices:
`, endpoint)
	for i := range n {
		fmt.Fprintf(&b, "  - id: sm-%03d\n    kind: smoke\n    model: M\n    grid: \"450204002003\"\n    address: 鹅山路%d号\n", i, i+1)
	}
	l, err := devices.ParseLedger("storm.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestStorm: 500 smoke detectors of one village alarming within a second
// (an alarm-level rule: fires are never grouped, TestStormFireNotGrouped)
// give the station the first alarm on its own and then one grouped incident
// push counting all 500 and listing the first MaxIncidentAlarms, not 500
// pushes.
func TestStorm(t *testing.T) {
	station, brigade := newReceiver(t), newReceiver(t)
	const n = 500
	l := stormLedger(t, n, station.srv.URL)
	r := newTestRules(t)
	smokeAlarm := &rules.Rule{ID: "smoke-alarm", Kind: devices.KindSmoke, Metric: r.smoke.Metric, Op: rules.OpEvent,
		Severity: rules.SeverityAlarm}
	cfg := testConfig(t)
	cfg.StormWindow = DefaultStormWindow
	cfg.StormHold = time.Second
	cfg.EscalationCheck = 50 * time.Millisecond
	cfg.BrigadeEndpoint = brigade.srv.URL + "/119"
	m := start(t, cfg, l)

	began := time.Now()
	for i := range n {
		m.Submit(raise(smokeAlarm, devices.Index(i), 0, 1, 0))
	}
	m.Sync()
	if d := time.Since(began); d > time.Second {
		t.Logf("the storm took %v to store (more than a second)", d)
	}
	if got := station.next(t); got.push.IdempotencyKey != "alm-000001-raised" {
		t.Errorf("station: first push %s, want alm-000001-raised", got.push.IdempotencyKey)
	}
	// The incident push is not a Push: decode it from the raw body.
	var inc IncidentPush
	got := station.next(t)
	if got.push.IdempotencyKey != "inc-000001-1" {
		t.Fatalf("station: second push %s, want inc-000001-1", got.push.IdempotencyKey)
	}
	if err := json.Unmarshal(got.body, &inc); err != nil {
		t.Fatal(err)
	}
	if inc.Count != n || len(inc.Alarms) != MaxIncidentAlarms || inc.Omitted != n-MaxIncidentAlarms ||
		inc.BySeverity["alarm"] != n || inc.Severity != "alarm" ||
		inc.FirstAlarm != "alm-000001" || inc.Station.ID != "st-tanxi" || inc.Grid.Village != "450204002003" ||
		!strings.HasPrefix(inc.Message, "【报警·群发事件】柳州市柳南区潭西街道鹅山村") || !strings.Contains(inc.Message, "500 起报警（报警 500）") ||
		!strings.Contains(inc.Message, "等 500 台设备") {
		t.Errorf("incident: count %d, alarms %d (omitted %d), by severity %v, first %s, station %s, grid %+v, message %q",
			inc.Count, len(inc.Alarms), inc.Omitted, inc.BySeverity, inc.FirstAlarm, inc.Station.ID, inc.Grid, inc.Message)
	}
	if len(got.body) > 20_000 {
		t.Errorf("incident body of %d bytes: not capped", len(got.body))
	}
	select {
	case p := <-brigade.reqs:
		t.Errorf("brigade got %s: alarms below fire are not the brigade's", p.push.IdempotencyKey)
	default:
	}
	// Once the village has been quiet for the storm window the incident
	// closes, with no further push.
	if err := m.flushIncidents(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var open, pushes int
	m.store.r.QueryRow(`SELECT COUNT(*) FROM incidents WHERE is_open = 1`).Scan(&open)
	m.store.r.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&pushes)
	if open != 0 || pushes != 2 {
		t.Errorf("%d incidents open, %d pushes queued; want 0, 2 (raised and incident)", open, pushes)
	}
	// Every alarm is stored, in the incident, and reached the station.
	poll(t, "every alarm pushed", func() bool {
		return len(list(t, m.Manager, Filter{State: StatePushed, Limit: MaxLimit})) == n
	})
	for _, a := range list(t, m.Manager, Filter{Limit: MaxLimit}) {
		if a.Incident != "inc-000001" {
			t.Errorf("%s not in the incident: %q", a.ID, a.Incident)
		}
	}
	// Members are not escalated one by one.
	if err := m.escalateDue(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a := get(t, m.Manager, "alm-000002"); a.Escalations != 0 {
		t.Errorf("member escalated")
	}
}

// TestStormFireNotGrouped: a fire right after an electrical alarm at the
// same station is news and is pushed on its own at once; a second fire then
// is grouped.
func TestStormFireNotGrouped(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.StormWindow = DefaultStormWindow
	cfg.StormHold = 100 * time.Millisecond
	cfg.EscalationCheck = 20 * time.Millisecond
	m := start(t, cfg, l)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	m.Submit(raise(r.slotTemp, devCharger, 1, 80, 0)) // an alarm after the fire: grouped
	for _, want := range []string{"alm-000001-raised", "alm-000002-raised", "inc-000001-1"} {
		if got := rc.next(t); got.push.IdempotencyKey != want {
			t.Errorf("got %s, want %s", got.push.IdempotencyKey, want)
		}
	}
}
