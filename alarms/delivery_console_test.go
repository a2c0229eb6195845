package alarms

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
)

// TestConsoleFanOut: every alarm update goes to its village's console
// topic.
func TestConsoleFanOut(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	var (
		mu  sync.Mutex
		got []string
	)
	cfg.Publish = func(_ context.Context, topic string, payload []byte) error {
		var a Alarm
		if err := json.Unmarshal(payload, &a); err != nil {
			t.Errorf("console payload: %v", err)
		}
		mu.Lock()
		got = append(got, topic+" "+a.ID+" "+string(a.State))
		mu.Unlock()
		return nil
	}
	m := start(t, cfg, l)
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	m.Sync()
	if _, err := m.Transition(context.Background(), "alm-000001", StateAcknowledged, "zhang-san", ""); err != nil {
		t.Fatal(err)
	}
	poll(t, "two console updates", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	})
	want := []string{"fw/v1/alarms/450204/450204001/450204001001 alm-000001 raised",
		"fw/v1/alarms/450204/450204001/450204001001 alm-000001 acknowledged"}
	mu.Lock()
	defer mu.Unlock()
	if got[0] != want[0] || got[1] != want[1] {
		t.Errorf("console updates %q, want %q", got, want)
	}
}
