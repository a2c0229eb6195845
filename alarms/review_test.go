package alarms

// Regression tests of the alarm-path review (issue 20): each failed on the
// code before its fix.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

func stormConfig(t testing.TB) Config {
	cfg := testConfig(t)
	cfg.StormWindow = DefaultStormWindow
	cfg.StormHold = DefaultStormHold
	return cfg
}

// TestGroupedClearNotBeforeIncident (defect 1): a grouped alarm that
// auto-clears before its incident push is not sent a "cleared" ahead of the
// push that announces it; the incident push lists it as cleared. One that
// clears after being listed gets its cleared push.
func TestGroupedClearNotBeforeIncident(t *testing.T) {
	r := newTestRules(t)
	d := newDriven(t, stormConfig(t), newReviewLedger(t, drivenBase))
	town := drivenBase + "/town"
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // alm-000001, on its own
	d.tick(time.Second)                                //
	d.apply(d.at(raise(r.cableTemp, rvEl1, 1, 75, 0))) // alm-000002, joins inc-000001
	d.tick(500 * time.Millisecond)                     //
	d.apply(d.at(clearEv(r.cableTemp, rvEl1, 1, 60)))  // cleared before the incident push
	d.tick(3 * time.Second)                            // the hold has passed: inc-000001-1
	if got, want := d.keys(town), []string{"alm-000001-raised", "inc-000001-1"}; !slices.Equal(got, want) {
		t.Fatalf("station pushes %v, want %v", got, want)
	}
	var inc IncidentPush
	if err := json.Unmarshal([]byte(d.body(town, "inc-000001-1")), &inc); err != nil {
		t.Fatal(err)
	}
	if len(inc.Alarms) != 2 || inc.Alarms[1].AlarmID != "alm-000002" || inc.Alarms[1].State != string(StateAutoCleared) {
		t.Errorf("incident lists %+v, want alm-000002 auto_cleared", inc.Alarms)
	}
	// Listed open, then cleared: the station that was told gets the clear.
	d.apply(d.at(raise(r.cableTemp, rvEl1, 2, 75, 0))) // alm-000003, joins
	d.tick(3 * time.Second)                            // inc-000001-2
	d.apply(d.at(clearEv(r.cableTemp, rvEl1, 2, 60)))
	if got, want := d.keys(town), []string{"alm-000001-raised", "inc-000001-1", "inc-000001-2", "alm-000003-cleared"}; !slices.Equal(got, want) {
		t.Errorf("station pushes %v, want %v", got, want)
	}
}

// TestIncidentRobotsOfEveryVillage (defect 2): an incident led from one
// village reaches the robot of another village of the same station.
func TestIncidentRobotsOfEveryVillage(t *testing.T) {
	r := newTestRules(t)
	cfg := stormConfig(t)
	var err error
	cfg.Robots, err = ParseRobots("450204001001=wecom:" + drivenBase + "/robot-v1?key=1,450204001002=wecom:" + drivenBase + "/robot-v2?key=2")
	if err != nil {
		t.Fatal(err)
	}
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // village 1 leads
	d.tick(time.Second)
	d.apply(d.at(raise(r.residual, rvEl2, 0, 356, 0))) // village 2 joins
	d.tick(3 * time.Second)
	if got := d.keys(drivenBase + "/robot-v2?key=2"); !slices.Contains(got, "inc-000001-1") {
		t.Errorf("village 2's robot got %v, want inc-000001-1", got)
	}
	if got := d.keys(drivenBase + "/robot-v1?key=1"); !slices.Equal(got, []string{"alm-000001-raised", "inc-000001-1"}) {
		t.Errorf("village 1's robot got %v", got)
	}
}

// TestFireNeverOnlyInIncident: a second fire at a station within the storm
// window gets its own push, to the station and the brigade, at once.
func TestFireNeverOnlyInIncident(t *testing.T) {
	r := newTestRules(t)
	cfg := stormConfig(t)
	cfg.BrigadeEndpoint = drivenBase + "/119"
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.smoke, rvSm1, 0, 1, 0)))
	d.tick(time.Second)
	d.apply(d.at(raise(r.smoke, rvSm2, 0, 1, 0)))
	for _, ep := range []string{drivenBase + "/town", drivenBase + "/119"} {
		if got, want := d.keys(ep), []string{"alm-000001-raised", "alm-000002-raised"}; !slices.Equal(got, want) {
			t.Errorf("%s got %v, want %v", ep, got, want)
		}
	}
	if a := d.alarm("alm-000002"); a.Incident != "" {
		t.Errorf("second fire grouped into %s", a.Incident)
	}
}

// TestEscalationsSpaced (defect 3): after five minutes without checks (a
// restart, a clock step) an unanswered alarm escalates one level, and the
// next level only respond_within later.
func TestEscalationsSpaced(t *testing.T) {
	r := newTestRules(t)
	d := newDriven(t, testConfig(t), newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0)))
	d.tick(5 * time.Minute)
	d.tick(time.Second)
	d.tick(time.Second)
	if a := d.alarm("alm-000001"); a.Escalations != 1 {
		t.Fatalf("%d escalations two seconds after the first, want 1", a.Escalations)
	}
	d.tick(DefaultRespondWithin - 2*time.Second - time.Millisecond)
	if a := d.alarm("alm-000001"); a.Escalations != 1 {
		t.Fatalf("%d escalations before respond_within passed again", a.Escalations)
	}
	d.tick(time.Millisecond)
	if a := d.alarm("alm-000001"); a.Escalations != 2 {
		t.Errorf("%d escalations respond_within after the first, want 2", a.Escalations)
	}
}

// TestFlapStableFromConditionEnd (defect 5): a flapping alarm whose
// condition lasted longer than FlapStable is auto-cleared FlapStable after
// the condition ended, not at once.
func TestFlapStableFromConditionEnd(t *testing.T) {
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.FlapCount = 2
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0)))
	d.tick(time.Second)
	d.apply(d.at(clearEv(r.residual, rvEl1, 0, 200)))
	d.tick(time.Second)
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // alm-000002, flapping
	if a := d.alarm("alm-000002"); !a.Flapping {
		t.Fatal("second alarm not flapping")
	}
	d.tick(10 * time.Minute) // the condition holds ten minutes
	d.apply(d.at(clearEv(r.residual, rvEl1, 0, 200)))
	d.tick(time.Second)
	if a := d.alarm("alm-000002"); !a.Open {
		t.Fatalf("auto-cleared a second after its long condition ended (%s)", a.State)
	}
	d.tick(DefaultFlapStable)
	if a := d.alarm("alm-000002"); a.State != StateAutoCleared {
		t.Errorf("state %s after a stable period, want auto_cleared", a.State)
	}
}

// TestIncidentMarksOnlyListed (defect 8, second half): the delivery of an
// incident push moves to pushed exactly the alarms it listed, not every
// member with a lower id (on PostgreSQL a lower id may join later).
func TestIncidentMarksOnlyListed(t *testing.T) {
	r := newTestRules(t)
	d := newDriven(t, stormConfig(t), newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // alm-000001
	d.apply(d.at(raise(r.residual, rvEl3, 0, 356, 0))) // alm-000002, another station
	d.apply(d.at(raise(r.cableTemp, rvEl1, 1, 75, 0))) // alm-000003, joins inc-000001
	d.tick(3 * time.Second)                            // inc-000001-1 lists 1 and 3
	// alm-000002 joins late, as a lower id committed late would.
	if _, err := d.store.w.Exec(`UPDATE alarms SET incident_id = 1 WHERE id = 2`); err != nil {
		t.Fatal(err)
	}
	// Deliver only the incident push.
	row, err := d.store.nextPending(context.Background(), drivenBase+"/town")
	for err == nil && row != nil && row.transition != TransitionIncident {
		d.store.markDelivered(context.Background(), row, d.clk)
		row, err = d.store.nextPending(context.Background(), drivenBase+"/town")
	}
	if err != nil || row == nil {
		t.Fatalf("incident push not pending: %v", err)
	}
	if _, err := d.store.markDelivered(context.Background(), row, d.clk); err != nil {
		t.Fatal(err)
	}
	if a := d.alarm("alm-000003"); a.State != StatePushed {
		t.Errorf("listed alarm %s, want pushed", a.State)
	}
	if a := d.alarm("alm-000002"); a.State != StateRaised {
		t.Errorf("alarm the push did not list moved to %s", a.State)
	}
}

// TestCloseReachesEveryReceiver (defect 10): the closing push goes to the
// stations and the brigade an escalation reached, and to the receivers of
// an incident push that listed the alarm.
func TestCloseReachesEveryReceiver(t *testing.T) {
	r := newTestRules(t)
	cfg := stormConfig(t)
	cfg.BrigadeEndpoint = drivenBase + "/119"
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	ctx := context.Background()
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // alm-000001 → town
	d.tick(time.Minute)                                // escalated to the county
	d.tick(time.Minute)                                // and to the brigade
	d.apply(d.at(raise(r.cableTemp, rvEl1, 1, 75, 0))) // alm-000002, on its own
	d.apply(d.at(raise(r.cableTemp, rvEl1, 2, 75, 0))) // alm-000003, joins inc-000001
	d.tick(3 * time.Second)
	if _, err := d.Transition(ctx, "alm-000001", StateTest, "zhang-san", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Transition(ctx, "alm-000003", StateFalseAlarm, "zhang-san", ""); err != nil {
		t.Fatal(err)
	}
	for ep, want := range map[string][]string{
		"/town":   {"alm-000001-raised", "alm-000002-raised", "inc-000001-1", "alm-000001-test", "alm-000003-false_alarm"},
		"/county": {"alm-000001-escalated-1", "alm-000001-test"},
		"/119":    {"alm-000001-escalated-2", "alm-000001-test"},
	} {
		if got := d.keys(drivenBase + ep); !slices.Equal(got, want) {
			t.Errorf("%s got %v, want %v", ep, got, want)
		}
	}
}

// TestIncidentHooksNotRerun (defect 12): an incident push does not run the
// leader's OnTransition (a second annotation) nor OnClosed again.
func TestIncidentHooksNotRerun(t *testing.T) {
	r := newTestRules(t)
	cfg := stormConfig(t)
	var transitions, closed atomic.Int32
	cfg.OnTransition = func(Alarm) { transitions.Add(1) }
	cfg.OnClosed = func(Alarm) { closed.Add(1) }
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0)))
	if _, err := d.Transition(context.Background(), "alm-000001", StateFalseAlarm, "zhang-san", ""); err != nil {
		t.Fatal(err)
	}
	d.apply(d.at(raise(r.cableTemp, rvEl1, 1, 75, 0)))
	d.apply(d.at(raise(r.cableTemp, rvEl1, 2, 75, 0)))
	d.tick(3 * time.Second)
	if len(d.keys(drivenBase+"/town")) < 3 {
		t.Fatalf("no incident push: %v", d.keys(drivenBase+"/town"))
	}
	// raise 1, false alarm 1, raise 2, raise 3: four; the incident none.
	if transitions.Load() != 4 || closed.Load() != 1 {
		t.Errorf("OnTransition %d times, OnClosed %d; want 4, 1", transitions.Load(), closed.Load())
	}
}

// TestOlderDutyReportIgnored (defect 12): a duty report older than the one
// stored (its ts) does not overwrite it.
func TestOlderDutyReportIgnored(t *testing.T) {
	d := newDriven(t, testConfig(t), newReviewLedger(t, drivenBase))
	ctx := context.Background()
	now := d.clk.UnixMilli()
	if _, err := d.SetStationStatus(ctx, "st-town", []byte(`{"duty":"busy","ts":`+itoa(now-1000)+`}`), "mqtt"); err != nil {
		t.Fatal(err)
	}
	s, err := d.SetStationStatus(ctx, "st-town", []byte(`{"duty":"on_duty","people":3,"ts":`+itoa(now-60_000)+`}`), "mqtt")
	if err != nil {
		t.Fatal(err)
	}
	if s.Duty != DutyBusy {
		t.Errorf("duty %s after an older report, want busy", s.Duty)
	}
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }

// TestPermanentRefusal (defect 9): a push the station refuses for good
// (413) is parked with a delivery-fault notice, and the fire behind it is
// delivered; the refused alarm is escalated at once.
func TestPermanentRefusal(t *testing.T) {
	rc := newReceiver(t)
	rc.setStatus(func(n int) int {
		if n == 1 {
			return http.StatusRequestEntityTooLarge
		}
		return http.StatusOK
	})
	l := newReviewLedger(t, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.BrigadeEndpoint = newReceiver(t).srv.URL
	m := start(t, cfg, l)
	m.Submit(raise(r.residual, rvEl1, 0, 356, 0)) // refused for good
	m.Sync()
	if got := rc.next(t); got.push.IdempotencyKey != "alm-000001-raised" || got.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("first request %s %d", got.push.IdempotencyKey, got.status)
	}
	m.Submit(raise(r.smoke, rvSm1, 0, 1, 0)) // a fire behind it
	want := map[string]bool{"alm-000001-delivery_fault-1": true, "alm-000001-escalated-1": true, "alm-000002-raised": true}
	deadline := time.After(5 * time.Second)
	for len(want) > 0 {
		select {
		case got := <-rc.reqs:
			delete(want, got.push.IdempotencyKey)
		case <-deadline:
			t.Fatalf("not delivered within 5 s: %v (a refused push blocks the endpoint)", want)
		}
	}
	a := get(t, m.Manager, "alm-000001")
	if len(a.Pushes) == 0 || !strings.Contains(a.Pushes[0].LastError, "413") {
		t.Errorf("pushes %+v", a.Pushes)
	}
}

func TestPermanentClassification(t *testing.T) {
	for _, c := range []struct {
		status int
		err    error
		want   bool
	}{
		{413, errors.New("status 413"), true},
		{400, errors.New("status 400"), true},
		{404, errors.New("status 404"), true},
		{408, errors.New("status 408"), false},
		{429, errors.New("status 429"), false},
		{500, errors.New("status 500"), false},
		{503, errors.New("status 503"), false},
		{0, errors.New("connection refused"), false},
		{200, &robotError{code: 93000, msg: "invalid webhook url"}, true},
		{200, &robotError{code: 310000, msg: "keywords not in content"}, true},
		{200, &robotError{code: 45009, msg: "api freq out of limit"}, false},
		{200, &robotError{code: 130101, msg: "send too fast"}, false},
		{200, &robotError{code: -1, msg: "system busy"}, false},
	} {
		if got := permanent(c.status, c.err); got != c.want {
			t.Errorf("permanent(%d, %v) = %v, want %v", c.status, c.err, got, c.want)
		}
	}
}

var _ = rules.Raise

// TestFireAvoidsFailingStation (defect 9, routing): while a station's
// endpoint keeps failing, a new fire goes to the next station up at once,
// and to the brigade.
func TestFireAvoidsFailingStation(t *testing.T) {
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.BrigadeEndpoint = drivenBase + "/119"
	d := newDriven(t, cfg, newReviewLedger(t, drivenBase))
	d.apply(d.at(raise(r.residual, rvEl1, 0, 356, 0))) // waits for the town's endpoint
	for range failingAttempts {
		d.clk = d.clk.Add(15 * time.Second)
		if err := d.store.markFailed(context.Background(), 1, d.clk, "connection refused"); err != nil {
			t.Fatal(err)
		}
	}
	d.apply(d.at(raise(r.smoke, rvSm1, 0, 1, 0)))
	a := d.alarm("alm-000002")
	if a.Station != "st-county" || !strings.Contains(a.RouteNote, "持续失败") {
		t.Errorf("fire routed to %s (%q), want st-county past the failing town endpoint", a.Station, a.RouteNote)
	}
	for _, ep := range []string{"/county", "/119"} {
		if got := d.keys(drivenBase + ep); !slices.Contains(got, "alm-000002-raised") {
			t.Errorf("%s got %v", ep, got)
		}
	}
	// An alarm below fire still goes to its station (its queue, in order).
	d.apply(d.at(raise(r.cableTemp, rvEl1, 1, 75, 0)))
	if a := d.alarm("alm-000003"); a.Station != "st-town" {
		t.Errorf("alarm routed to %s", a.Station)
	}
}

// TestStoppingEndsSync (defect 11): with the store failing, a caller waiting
// in Sync (the MQTT handler, holding its source, so that Run's context is
// not yet cancelled) is released by Stopping after the drain grace, the
// event logged as LOST, instead of hanging shutdown.
func TestStoppingEndsSync(t *testing.T) {
	r := newTestRules(t)
	m, err := NewManager(testConfig(t), newReviewLedger(t, drivenBase))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.grace = 100 * time.Millisecond
	if _, err := m.store.w.Exec(`CREATE TRIGGER broken BEFORE INSERT ON alarms BEGIN SELECT RAISE(ABORT, 'disk failing'); END`); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()
	m.Submit(raise(r.residual, rvEl1, 0, 356, 0))
	synced := make(chan struct{})
	go func() { m.Sync(); close(synced) }()
	m.Stopping()
	select {
	case <-synced:
	case <-time.After(5 * time.Second):
		t.Fatal("Sync still waiting 5 s after Stopping: shutdown hangs while the store fails")
	}
	cancel()
	if err := <-runDone; err == nil || !strings.Contains(err.Error(), "not stored") {
		t.Errorf("Run: %v, want the lost event reported", err)
	}
}
