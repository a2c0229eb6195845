package alarms

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/rules"
)

// legal is the lifecycle of docs/alarms.md, written out independently of
// the table in lifecycle.go: every pair not listed is illegal.
var legal = map[string]bool{
	"raised>pushed": true, "raised>received": true, "raised>acknowledged": true,
	"raised>false_alarm": true, "raised>test": true, "raised>auto_cleared": true,
	"pushed>received": true, "pushed>acknowledged": true,
	"pushed>false_alarm": true, "pushed>test": true, "pushed>auto_cleared": true,
	"received>acknowledged": true, "received>false_alarm": true, "received>test": true, "received>auto_cleared": true,
	"acknowledged>dispatched": true, "acknowledged>resolved": true, "acknowledged>false_alarm": true, "acknowledged>test": true,
	"dispatched>arrived": true, "dispatched>false_alarm": true, "dispatched>test": true,
	"arrived>resolved": true, "arrived>false_alarm": true, "arrived>test": true,
}

// TestCheckTransition checks every pair of states, for an alarm and a fire.
func TestCheckTransition(t *testing.T) {
	for _, sev := range []string{"alarm", "fire"} {
		for _, from := range States {
			for _, to := range States {
				want := legal[string(from)+">"+string(to)]
				if sev == "fire" && to == StateAutoCleared {
					want = false // a fire is never closed automatically
				}
				err := CheckTransition(from, to, sev)
				if want && err != nil {
					t.Errorf("%s %s → %s: %v, want legal", sev, from, to, err)
				}
				if !want && !errors.Is(err, ErrIllegalTransition) {
					t.Errorf("%s %s → %s: %v, want ErrIllegalTransition", sev, from, to, err)
				}
				if !want && err != nil && !strings.Contains(err.Error(), string(to)) {
					t.Errorf("%s %s → %s: error %q does not name the target state", sev, from, to, err)
				}
			}
		}
	}
	if err := CheckTransition("raised", "auto_cleared", "fire"); err == nil || !strings.Contains(err.Error(), "never closed automatically") {
		t.Errorf("fire auto-clear: %v", err)
	}
	if err := CheckTransition("bogus", "resolved", "alarm"); !errors.Is(err, ErrIllegalTransition) {
		t.Errorf("unknown state: %v", err)
	}
	for _, s := range States {
		if want := !slices.Contains([]State{StateResolved, StateFalseAlarm, StateTest, StateAutoCleared}, s); s.Open() != want {
			t.Errorf("%s.Open() = %v", s, s.Open())
		}
	}
}

// forceState puts an alarm in a state directly in the store, to test the
// transitions out of it.
func forceState(t *testing.T, m *Manager, id string, s State) {
	t.Helper()
	n, _ := parseID(id)
	open := 0
	if s.Open() {
		open = 1
	}
	if _, err := m.store.w.Exec(`UPDATE alarms SET state = ?, is_open = ? WHERE id = ?`, string(s), open, n); err != nil {
		t.Fatal(err)
	}
}

// TestTransitionsThroughStore drives Manager.Transition from every state to
// every state a person can ask for, for an alarm and a fire, and checks the
// outcome, the stored state and the history.
func TestTransitionsThroughStore(t *testing.T) {
	// A dead endpoint: pushes are never delivered, so nothing moves an
	// alarm behind the test's back.
	dead := newReceiver(t)
	dead.srv.Close()
	l := testLedger(t, dead.srv.URL, dead.srv.URL)
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	ctx := context.Background()

	person := []State{StateReceived, StateAcknowledged, StateDispatched, StateArrived, StateResolved, StateFalseAlarm, StateTest}
	n := 0
	for _, c := range []struct {
		rule *rules.Rule
		dev  devices.Index
	}{{r.residual, devElectrical}, {r.smoke, devSmoke}} {
		for _, from := range States {
			for _, to := range person {
				n++
				ch := uint8(len(person)*slices.Index(States, from) + slices.Index(person, to) + 1)
				m.Submit(raise(c.rule, c.dev, ch, 356, 12_000))
				id := formatID(int64(n))
				poll(t, "alarm "+id, func() bool {
					_, err := m.store.get(ctx, int64(n))
					return err == nil
				})
				forceState(t, m.Manager, id, from)
				a, err := m.Transition(ctx, id, to, "zhang-san", fmt.Sprintf("note %s>%s", from, to))
				name := fmt.Sprintf("%s %s: %s → %s", c.rule.Severity, id, from, to)
				noop := from == to || (to == StateReceived && slices.Contains(receiptAfter, from))
				switch {
				case noop:
					if err != nil || a.State != from {
						t.Errorf("%s: %v, state %s; want a no-op", name, err, a.State)
					}
				case legal[string(from)+">"+string(to)]:
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					h := a.History[len(a.History)-1]
					if a.State != to || a.Open != to.Open() || h.From != from || h.To != to || h.Actor != "zhang-san" ||
						h.Note != fmt.Sprintf("note %s>%s", from, to) || h.At.IsZero() {
						t.Errorf("%s: state %s open %v, last change %+v", name, a.State, a.Open, h)
					}
					if !to.Open() && a.ClosedAt == nil {
						t.Errorf("%s: closed without closed_at", name)
					}
				default:
					if !errors.Is(err, ErrIllegalTransition) {
						t.Errorf("%s: %v, want ErrIllegalTransition", name, err)
					}
					if got := get(t, m.Manager, id); got.State != from || len(got.History) != 1 {
						t.Errorf("%s refused but state %s, %d history entries", name, got.State, len(got.History))
					}
				}
			}
		}
	}
	for _, to := range []State{StateRaised, StatePushed, StateAutoCleared} {
		if _, err := m.Transition(ctx, "alm-000001", to, "x", ""); !errors.Is(err, ErrIllegalTransition) {
			t.Errorf("person → %s: %v, want ErrIllegalTransition", to, err)
		}
	}
	if _, err := m.Transition(ctx, "alm-999999", StateResolved, "x", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown alarm: %v", err)
	}
}

// TestAutomaticTransitions: delivery moves raised → pushed; the condition
// ending auto-clears an alarm nobody took on, but not one somebody did,
// and never a fire.
func TestAutomaticTransitions(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	m := start(t, testConfig(t), l)
	ctx := context.Background()

	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // alm-000001
	rc.next(t)
	poll(t, "pushed", func() bool { return get(t, m.Manager, "alm-000001").State == StatePushed })
	a := get(t, m.Manager, "alm-000001")
	if h := a.History; len(h) != 2 || h[0].To != StateRaised || h[0].Actor != ActorRules || h[1].From != StateRaised ||
		h[1].To != StatePushed || h[1].Actor != ActorDispatch {
		t.Errorf("history %+v", h)
	}
	m.Submit(clearEv(r.residual, devElectrical, 0, 240))
	rc.next(t)
	if a := get(t, m.Manager, "alm-000001"); a.State != StateAutoCleared || a.Open || a.ClosedAt == nil ||
		a.History[2].From != StatePushed || a.History[2].Actor != ActorRules {
		t.Errorf("after clear: %s open %v history %+v", a.State, a.Open, a.History)
	}

	// Acknowledged, then the condition ends: stays open for the person.
	m.Submit(raise(r.cableTemp, devElectrical, 1, 75, 12_000)) // alm-000002
	rc.next(t)
	if _, err := m.Transition(ctx, "alm-000002", StateAcknowledged, "li-si", ""); err != nil {
		t.Fatal(err)
	}
	m.Submit(clearEv(r.cableTemp, devElectrical, 1, 60))
	poll(t, "condition ended", func() bool { return get(t, m.Manager, "alm-000002").ConditionEndedAt != nil })
	if a := get(t, m.Manager, "alm-000002"); a.State != StateAcknowledged || !a.Open {
		t.Errorf("acknowledged alarm after clear: %s open %v", a.State, a.Open)
	}
	// Closing it pushes the outcome to the station, with who and why.
	if _, err := m.Transition(ctx, "alm-000002", StateDispatched, "li-si", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Transition(ctx, "alm-000002", StateArrived, "li-si", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Transition(ctx, "alm-000002", StateResolved, "li-si", "线缆接头松动，已紧固"); err != nil {
		t.Fatal(err)
	}
	got := rc.next(t)
	if got.status != http.StatusOK || got.push.IdempotencyKey != "alm-000002-resolved" || got.push.State != "resolved" ||
		got.push.Actor != "li-si" || got.push.Note != "线缆接头松动，已紧固" || got.push.ClosedAt == "" ||
		!strings.Contains(got.push.Message, "【报警·已处置】") || !strings.Contains(got.push.Message, "li-si") {
		t.Errorf("closing push %+v", got.push)
	}

	// A fire whose condition ends stays open.
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0)) // alm-000003
	rc.next(t)
	m.Submit(clearEv(r.smoke, devSmoke, 0, 0))
	poll(t, "fire condition ended", func() bool { return get(t, m.Manager, "alm-000003").ConditionEndedAt != nil })
	if a := get(t, m.Manager, "alm-000003"); !a.Open {
		t.Errorf("fire closed automatically: %s", a.State)
	}
}
