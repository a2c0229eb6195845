package alarms

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestResponderSupport: what package responder uses of the manager, on
// either store (TestPostgres runs it too): Alarm, Redispatch with its push
// to the new station and its history entry, the link added at delivery
// for the receiving station, and Members.
func TestResponderSupport(t *testing.T) {
	tanxi, other := newReceiver(t), newReceiver(t)
	cfg := testConfig(t)
	cfg.ResponderLink = func(alarm, station string, _ time.Time) string {
		return "https://fw.example/r/" + alarm + "#t=" + station
	}
	m := start(t, cfg, testLedger(t, tanxi.srv.URL, other.srv.URL))
	r := newTestRules(t)
	ctx := context.Background()
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	got := tanxi.next(t)
	if got.push.AlarmID != "alm-000001" {
		t.Fatalf("push %s", got.push.IdempotencyKey)
	}
	var body map[string]any
	json.Unmarshal(got.body, &body)
	if body["responder_url"] != "https://fw.example/r/alm-000001#t=st-tanxi" ||
		!strings.HasSuffix(got.push.Message, "一键处置：https://fw.example/r/alm-000001#t=st-tanxi") {
		t.Errorf("raised push: responder_url %v, message %q", body["responder_url"], got.push.Message)
	}

	if _, err := m.Alarm(ctx, "alm-000099"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown alarm: %v", err)
	}
	if _, err := m.Redispatch(ctx, "alm-000001", "st-nowhere", "duty", ""); !errors.Is(err, ErrNoStation) {
		t.Errorf("unknown station: %v", err)
	}
	a, err := m.Redispatch(ctx, "alm-000001", "st-other", "duty", "潭西站外出")
	if err != nil || a.Station != "st-other" {
		t.Fatalf("redispatch: %v %s", err, a.Station)
	}
	// (The delivery's raised → pushed may be recorded before or after it.)
	found := false
	for _, h := range a.History {
		if h.Actor == "duty" && h.Note == "改派至 另一微型消防站（原 潭西街道微型消防站）：潭西站外出" && h.From == h.To {
			found = true
		}
	}
	if !found {
		t.Errorf("no redispatch in the history %+v", a.History)
	}
	re := other.next(t)
	json.Unmarshal(re.body, &body)
	if re.push.IdempotencyKey != "alm-000001-redispatch-1" || re.push.Station.ID != "st-other" ||
		body["responder_url"] != "https://fw.example/r/alm-000001#t=st-other" {
		t.Errorf("push to the new station: %s to %s, link %v", re.push.IdempotencyKey, re.push.Station.ID, body["responder_url"])
	}

	for _, to := range []State{StateAcknowledged, StateDispatched} {
		if _, err := m.Transition(ctx, "alm-000001", to, "王五@st-other", ""); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.Transition(ctx, "alm-000001", StateFalseAlarm, "张三@st-tanxi", "原因：测试"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redispatch(ctx, "alm-000001", "st-tanxi", "duty", ""); !errors.Is(err, ErrIllegalTransition) {
		t.Errorf("redispatch of a closed alarm: %v", err)
	}
	ms, err := m.Members(ctx, time.Now().Add(-time.Hour), 10)
	byName := map[string]Member{}
	for _, x := range ms {
		byName[x.Name] = x
	}
	if err != nil || len(ms) != 2 || byName["张三"].Station != "st-tanxi" || byName["张三"].Changes != 1 ||
		byName["王五"].Station != "st-other" || byName["王五"].Changes != 2 {
		t.Errorf("members %+v %v", ms, err)
	}
}
