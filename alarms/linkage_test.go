package alarms

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestLinkageOutcomes: a refused command, a command nobody answers, and
// answers that match nothing.
func TestLinkageOutcomes(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.CommandRetry = 500 * time.Millisecond
	var (
		mu   sync.Mutex
		sent []string
	)
	cfg.Publish = func(_ context.Context, topic string, payload []byte) error {
		if !strings.HasPrefix(topic, "fw/v1/down/") {
			return nil // the console fan-out
		}
		mu.Lock()
		defer mu.Unlock()
		sent = append(sent, topic+" "+string(payload))
		return nil
	}
	m := start(t, cfg, l)
	ctx := context.Background()

	m.Submit(raise(r.slotTemp, devCharger, 2, 80, 0)) // alm-000001
	m.Sync()
	poll(t, "command sent", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent) > 0
	})
	mu.Lock()
	if sent[0] != `fw/v1/down/ch-450204-0004/command {"cmd":"cut_power","id":"alm-000001-cut_power","ch":2}` {
		t.Errorf("sent %q", sent[0])
	}
	mu.Unlock()
	if err := m.CommandAck(ctx, "ch-450204-0004", []byte(`{"id":"alm-000001-cut_power","ok":false,"error":"modbus: timeout"}`)); err != nil {
		t.Fatal(err)
	}
	a := get(t, m.Manager, "alm-000001")
	if c := a.Commands[0]; c.State != CommandRefused || !strings.Contains(c.LastError, "modbus: timeout") {
		t.Errorf("refused command %+v", c)
	}
	// A repeat of the answer changes nothing; answers that match nothing are errors.
	if err := m.CommandAck(ctx, "ch-450204-0004", []byte(`{"id":"alm-000001-cut_power","ok":true}`)); err != nil {
		t.Errorf("repeat: %v", err)
	}
	if get(t, m.Manager, "alm-000001").Commands[0].State != CommandRefused {
		t.Errorf("a repeated answer changed the outcome")
	}
	for dev, p := range map[string]string{
		"ch-450204-0004": `{"id":"alm-000099-cut_power","ok":true}`,
		"el-450204-0001": `{"id":"alm-000001-cut_power","ok":true}`,
		"ch-450204-0005": `{"ok":true}`,
	} {
		if err := m.CommandAck(ctx, dev, []byte(p)); !errors.Is(err, ErrBadAck) {
			t.Errorf("ack %s from %s: %v, want ErrBadAck", p, dev, err)
		}
	}

	// Nobody answers: three attempts, then failed, on the alarm's history.
	m.Submit(raise(r.slotTemp, devCharger, 3, 80, 0)) // alm-000002
	m.Sync()
	poll(t, "command failed", func() bool {
		a := get(t, m.Manager, "alm-000002")
		return len(a.Commands) == 1 && a.Commands[0].State == CommandFailed
	})
	a = get(t, m.Manager, "alm-000002")
	if c := a.Commands[0]; c.Attempts != CommandAttempts || !strings.Contains(a.History[len(a.History)-1].Note, "linkage cut_power ch 3: failed") {
		t.Errorf("failed command %+v, history %+v", c, a.History)
	}
}
