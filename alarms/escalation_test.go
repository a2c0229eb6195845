package alarms

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// TestEscalation with shortened timers: an alarm nobody acknowledges is
// escalated up the grid hierarchy and then to the brigade, re-pushed each
// time and recorded; an acknowledged one is not.
func TestEscalation(t *testing.T) {
	rc := newReceiver(t)
	l, err := devices.ParseLedger("routing.yaml", fmt.Appendf(nil, routingLedger, rc.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.RespondWithin = 300 * time.Millisecond
	cfg.EscalationCheck = 20 * time.Millisecond
	cfg.BrigadeEndpoint = rc.srv.URL + "/119"
	m := start(t, cfg, l)

	start := time.Now()
	m.Submit(raise(r.cableTemp, 0, 1, 75, 12_000)) // alm-000001, el-1: village, town, county
	if got := rc.next(t); got.push.IdempotencyKey != "alm-000001-raised" || got.push.Station.ID != "st-village" {
		t.Fatalf("first push %s to %s", got.push.IdempotencyKey, got.push.Station.ID)
	}
	for i, want := range []string{"st-town", "st-county", ""} {
		got := rc.next(t)
		key := fmt.Sprintf("alm-000001-escalated-%d", i+1)
		if got.push.IdempotencyKey != key || got.push.Transition != "escalated" || got.push.Escalation != i+1 ||
			(want != "" && got.push.Station.ID != want) || !strings.HasPrefix(got.push.Message, "【升级·报警】报警 alm-000001") {
			t.Errorf("escalation %d: %s to %s: %q", i+1, got.push.IdempotencyKey, got.push.Station.ID, got.push.Message)
		}
		if min := time.Duration(i+1) * cfg.RespondWithin; time.Since(start) < min {
			t.Errorf("escalation %d after %v, before %v", i+1, time.Since(start), min)
		}
	}
	a := get(t, m.Manager, "alm-000001")
	if a.Escalations != MaxEscalations {
		t.Errorf("escalations %d, want %d", a.Escalations, MaxEscalations)
	}
	var notes []string
	for _, h := range a.History {
		if h.Actor == ActorSystem {
			notes = append(notes, h.Note)
		}
	}
	if len(notes) != 3 || !strings.Contains(notes[0], "潭西街道微型消防站") || !strings.Contains(notes[2], "消防救援大队") {
		t.Errorf("escalation history %q", notes)
	}

	// Acknowledged (at once, so that the loop cannot be first): never
	// escalated, however late it is.
	m.Submit(raise(r.cableTemp, 0, 2, 75, 12_000)) // alm-000002
	m.Sync()
	if _, err := m.Transition(context.Background(), "alm-000002", StateAcknowledged, "zhang-san", ""); err != nil {
		t.Fatal(err)
	}
	if err := m.escalateDue(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a := get(t, m.Manager, "alm-000002"); a.Escalations != 0 {
		t.Errorf("acknowledged alarm escalated %d times", a.Escalations)
	}

	// A fault (a dead battery, an offline detector) is never escalated:
	// that is for the duty officer's list, not the brigade.
	fault := *r.cableTemp
	fault.ID, fault.Severity = "elec-fault", rules.SeverityFault
	m.Submit(raise(&fault, 0, 3, 75, 12_000)) // alm-000003
	m.Sync()
	if err := m.escalateDue(context.Background(), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if a := get(t, m.Manager, "alm-000003"); a.Escalations != 0 || a.Severity != "fault" {
		t.Errorf("%s alarm escalated %d times", a.Severity, a.Escalations)
	}
}
