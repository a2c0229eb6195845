package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
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
	topic, payload, _ := strings.Cut(sent[0], " ")
	var c command
	if err := json.Unmarshal([]byte(payload), &c); err != nil || topic != "fw/v1/down/ch-450204-0004/command" ||
		c != (command{Cmd: "cut_power", ID: "alm-000001-cut_power", Ch: 2, TS: c.TS, Exp: c.TS + commandMaxAge.Milliseconds()}) ||
		time.Since(time.UnixMilli(c.TS)).Abs() > time.Minute {
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

// TestLinkageStaleCommand: the age of a command is checked before every
// attempt. A command attempted once, then not answered while firewatch was
// down for hours, is not sent again: it fails with the reason on the
// alarm's history. An answer that comes after all is still recorded.
func TestLinkageStaleCommand(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.CommandRetry = time.Hour // the loop makes the first attempt only
	var (
		mu   sync.Mutex
		sent []string
	)
	cfg.Publish = func(_ context.Context, topic string, payload []byte) error {
		if strings.HasPrefix(topic, "fw/v1/down/") {
			mu.Lock()
			sent = append(sent, string(payload))
			mu.Unlock()
		}
		return nil
	}
	m := start(t, cfg, l)
	ctx := context.Background()
	m.Submit(raise(r.slotTemp, devCharger, 2, 80, 0)) // alm-000001
	m.Sync()
	// The first attempt, published (the attempt is recorded before the
	// publish).
	poll(t, "first attempt", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(sent) == 1
	})

	// Two hours later (a firewatch that was down): the retry is due, the
	// command too old.
	if err := m.sendCommands(ctx, time.Now().Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	n := len(sent)
	mu.Unlock()
	a := get(t, m.Manager, "alm-000001")
	c := a.Commands[0]
	if n != 1 || c.State != CommandFailed || c.Attempts != 1 || !strings.Contains(c.LastError, "not sent again: older than 1m0s") {
		t.Fatalf("stale command: %d sent, %+v", n, c)
	}
	if !slices.ContainsFunc(a.History, func(h Change) bool { return strings.Contains(h.Note, "linkage cut_power ch 2: failed") }) {
		t.Errorf("history %+v", a.History)
	}
	// The device did perform it (its answer was lost or late): recorded.
	if err := m.CommandAck(ctx, "ch-450204-0004", []byte(`{"id":"alm-000001-cut_power","ok":true,"state":"off","dup":true}`)); err != nil {
		t.Fatal(err)
	}
	if c := get(t, m.Manager, "alm-000001").Commands[0]; c.State != CommandAcked || !strings.Contains(c.LastError, "late answer") {
		t.Errorf("late answer: %+v", c)
	}
}

// TestLinkageAckState: an ack that says ok but reads back the relay in the
// wrong state is a failure to act on; a repeated (dup) answer to a command
// already answered changes nothing.
func TestLinkageAckState(t *testing.T) {
	rc := newReceiver(t)
	l := testLedger(t, rc.srv.URL, rc.srv.URL)
	r := newTestRules(t)
	cfg := testConfig(t)
	cfg.CommandRetry = time.Hour
	cfg.Publish = func(context.Context, string, []byte) error { return nil }
	m := start(t, cfg, l)
	ctx := context.Background()
	m.Submit(raise(r.slotTemp, devCharger, 2, 80, 0)) // alm-000001
	m.Submit(raise(r.slotTemp, devCharger, 3, 80, 0)) // alm-000002
	m.Sync()
	poll(t, "commands sent", func() bool {
		return get(t, m.Manager, "alm-000001").Commands[0].Attempts == 1 && get(t, m.Manager, "alm-000002").Commands[0].Attempts == 1
	})
	ack := func(p string) {
		t.Helper()
		if err := m.CommandAck(ctx, "ch-450204-0004", []byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	ack(`{"id":"alm-000001-cut_power","ok":true,"state":"on"}`)
	if c := get(t, m.Manager, "alm-000001").Commands[0]; c.State != CommandRefused || !strings.Contains(c.LastError, "reads back state on") {
		t.Errorf("contradicting read-back: %+v", c)
	}
	ack(`{"id":"alm-000002-cut_power","ok":true,"state":"off"}`)
	ack(`{"id":"alm-000002-cut_power","ok":false,"error":"expired","dup":true}`)
	if c := get(t, m.Manager, "alm-000002").Commands[0]; c.State != CommandAcked || !strings.Contains(c.LastError, "read back state off") {
		t.Errorf("confirmed command after a dup: %+v", c)
	}
}
