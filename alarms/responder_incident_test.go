package alarms

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// TestIncidentPushLinks (issue 16): an incident push gives every open
// alarm it lists its own responder link for the receiving station,
// besides the first alarm's link at the end of its message.
func TestIncidentPushLinks(t *testing.T) {
	station := newReceiver(t)
	const n = 4
	l := stormLedger(t, n, station.srv.URL)
	r := newTestRules(t)
	smokeAlarm := &rules.Rule{ID: "smoke-alarm", Kind: devices.KindSmoke, Metric: r.smoke.Metric, Op: rules.OpEvent,
		Severity: rules.SeverityAlarm}
	cfg := testConfig(t)
	cfg.StormWindow = DefaultStormWindow
	cfg.StormHold = time.Second
	cfg.ResponderLink = func(alarm, station string, _ time.Time) string {
		return "https://fw.example/r/" + alarm + "#t=" + station
	}
	m := start(t, cfg, l)
	for i := range n {
		m.Submit(raise(smokeAlarm, devices.Index(i), 0, 1, 0))
	}
	m.Sync()
	if got := station.next(t); got.push.IdempotencyKey != "alm-000001-raised" {
		t.Fatalf("first push %s", got.push.IdempotencyKey)
	}
	got := station.next(t)
	if got.push.IdempotencyKey != "inc-000001-1" {
		t.Fatalf("second push %s, want inc-000001-1", got.push.IdempotencyKey)
	}
	var inc struct {
		Message      string `json:"message"`
		ResponderURL string `json:"responder_url"`
		Alarms       []struct {
			AlarmID      string `json:"alarm_id"`
			State        string `json:"state"`
			ResponderURL string `json:"responder_url"`
		} `json:"alarms"`
	}
	if err := json.Unmarshal(got.body, &inc); err != nil {
		t.Fatal(err)
	}
	if inc.ResponderURL != "https://fw.example/r/alm-000001#t=st-tanxi" {
		t.Errorf("incident push's own link %q, want the first alarm's", inc.ResponderURL)
	}
	if len(inc.Alarms) != n {
		t.Fatalf("incident lists %d alarms, want %d", len(inc.Alarms), n)
	}
	for _, a := range inc.Alarms {
		if want := "https://fw.example/r/" + a.AlarmID + "#t=st-tanxi"; a.ResponderURL != want {
			t.Errorf("listed %s (%s): link %q, want %q", a.AlarmID, a.State, a.ResponderURL, want)
		}
	}
}
