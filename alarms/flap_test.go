package alarms

import (
	"strings"
	"testing"
	"time"
)

// TestFlapping: the third raise of one rule within the window is marked
// flapping; its clears and raises are then counted, not pushed, until the
// condition has been stable, when it auto-clears with one push.
func TestFlapping(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.FlapStable = 300 * time.Millisecond
	cfg.EscalationCheck = 20 * time.Millisecond
	m := start(t, cfg, l)

	for range 2 {
		m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
		m.Submit(clearEv(r.residual, devElectrical, 0, 240))
	}
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000)) // alm-000003: flapping
	m.Submit(clearEv(r.residual, devElectrical, 0, 240))
	lastRaise := time.Now()
	m.Submit(raise(r.residual, devElectrical, 0, 380, 12_000))
	m.Submit(clearEv(r.residual, devElectrical, 0, 230))

	var keys []string
	for range 6 {
		got := rc.next(t)
		keys = append(keys, got.push.IdempotencyKey)
		switch got.push.IdempotencyKey {
		case "alm-000003-raised":
			if !got.push.Flapping || !strings.Contains(got.push.Message, "已标记为抖动") {
				t.Errorf("flapping raise: flapping %v, message %q", got.push.Flapping, got.push.Message)
			}
		case "alm-000003-cleared":
			if time.Since(lastRaise) < cfg.FlapStable || !strings.Contains(got.push.Message, "抖动已停止") {
				t.Errorf("flapping alarm cleared after %v (stable %v): %q", time.Since(lastRaise), cfg.FlapStable, got.push.Message)
			}
		case "alm-000001-raised", "alm-000002-raised":
			if got.push.Flapping {
				t.Errorf("%s marked flapping", got.push.IdempotencyKey)
			}
		}
	}
	want := "alm-000001-raised alm-000001-cleared alm-000002-raised alm-000002-cleared alm-000003-raised alm-000003-cleared"
	if strings.Join(keys, " ") != want {
		t.Errorf("pushes %v\nwant %s", keys, want)
	}
	a := get(t, m.Manager, "alm-000003")
	if !a.Flapping || a.State != StateAutoCleared || a.Repeats != 1 || a.History[len(a.History)-1].Actor != ActorSystem {
		t.Errorf("alm-000003: flapping %v state %s repeats %d history %+v", a.Flapping, a.State, a.Repeats, a.History)
	}
	if n := len(list(t, m.Manager, Filter{})); n != 3 {
		t.Errorf("%d alarms, want 3", n)
	}
}
