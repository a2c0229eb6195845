package alarms

import (
	"net/http"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
)

// TestRegistryRemovedDeviceAlarmsClosed: a device removed from the live
// registry has its open alarm closed with a note, through the lifecycle
// (the station gets the closing push); a fire stays open for a person,
// the removal noted in its history.
func TestRegistryRemovedDeviceAlarmsClosed(t *testing.T) {
	tanxi, other := newReceiver(t), newReceiver(t)
	l := testLedger(t, tanxi.srv.URL, other.srv.URL)
	m := start(t, testConfig(t), l)
	live := devices.NewLive(l)
	m.Follow(live)
	tr := newTestRules(t)
	m.Submit(raise(tr.residual, devElectrical, 0, 350, 10_000))
	m.Submit(raise(tr.smoke, devSmoke, 0, 1, 0))
	m.Sync()
	for range 2 {
		if p := tanxi.next(t).push; p.Transition != TransitionRaised {
			t.Fatalf("push %s, want raised", p.Transition)
		}
	}
	if _, _, err := live.Apply(&devices.Change{DeleteDevices: []string{"el-450204-0001", "sm-450204-0002"}}); err != nil {
		t.Fatal(err)
	}
	// Closed when Apply returns.
	el := list(t, m.Manager, Filter{Device: "el-450204-0001"})
	if len(el) != 1 || el[0].State != StateAutoCleared {
		t.Fatalf("removed device's alarm: %+v, want auto_cleared", el)
	}
	// The outbox may record the raised push's delivery after the change:
	// look for the registry's entry, not at the last one.
	byRegistry := func(a Alarm) *Change {
		for i := range a.History {
			if a.History[i].Actor == ActorRegistry {
				return &a.History[i]
			}
		}
		return nil
	}
	if c := byRegistry(get(t, m.Manager, el[0].ID)); c == nil || c.Note != RemovedNoteZH || c.To != StateAutoCleared {
		t.Errorf("history entry %+v: want the registry's note", c)
	}
	p := tanxi.next(t).push
	if p.AlarmID != el[0].ID || p.Transition != string(StateAutoCleared) || !strings.Contains(p.Message, RemovedNoteZH) {
		t.Errorf("closing push %s %s %q", p.AlarmID, p.Transition, p.Message)
	}
	sm := list(t, m.Manager, Filter{Device: "sm-450204-0002"})
	if len(sm) != 1 || !sm[0].Open {
		t.Fatalf("removed device's fire: %+v, want it open", sm)
	}
	if c := byRegistry(get(t, m.Manager, sm[0].ID)); c == nil || !strings.HasPrefix(c.Note, RemovedNoteZH) {
		t.Errorf("fire's history entry %+v: want the removal noted", c)
	}
}

// TestRegistryStationEndpointChanged: pushes waiting for a station whose
// endpoint is dead go to the endpoint the registry gives it; a new
// station is routable at once.
func TestRegistryStationEndpointChanged(t *testing.T) {
	dead, other, fresh, added := newReceiver(t), newReceiver(t), newReceiver(t), newReceiver(t)
	dead.setStatus(func(int) int { return http.StatusServiceUnavailable })
	l := testLedger(t, dead.srv.URL, other.srv.URL)
	m := start(t, testConfig(t), l)
	live := devices.NewLive(l)
	m.Follow(live)
	tr := newTestRules(t)
	m.Submit(raise(tr.residual, devElectrical, 0, 350, 10_000))
	m.Sync()
	dead.next(t) // refused: the push waits in the outbox
	if _, _, err := live.Apply(&devices.Change{UpsertStations: []devices.StationEntry{
		{ID: "st-tanxi", Name: "潭西街道微型消防站", Grids: []string{"450204001"}, Endpoint: fresh.srv.URL},
		{ID: "st-new", Name: "建设路微型消防站", Grids: []string{"450204002001"}, Endpoint: added.srv.URL},
	}}); err != nil {
		t.Fatal(err)
	}
	if p := fresh.next(t).push; p.Transition != TransitionRaised || p.Device.ID != "el-450204-0001" {
		t.Errorf("new endpoint got %s of %s, want the waiting raised push", p.Transition, p.Device.ID)
	}
	m.Submit(raise(tr.pressure, devHydrant, 0, 0.05, 60_000))
	m.Sync()
	if p := added.next(t).push; p.Station.ID != "st-new" || p.Device.ID != "hy-450204-0003" {
		t.Errorf("new station got %+v of %s", p.Station, p.Device.ID)
	}
	if got := list(t, m.Manager, Filter{Device: "hy-450204-0003"}); len(got) != 1 || got[0].Station != "st-new" {
		t.Errorf("hydrant alarm %+v: want station st-new", got)
	}
}
