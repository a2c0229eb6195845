package server

import (
	"testing"
	"time"
)

// TestHistoryRing: a UITD remembers its last historyLen ended 查岗; once full, the oldest goes and a period
// reaching before the oldest remembered one is partial.
func TestHistoryRing(t *testing.T) {
	var h history
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, cst)
	for i := range historyLen + 5 {
		secs := float64(i)
		h.add(&Inspection{AskedAt: t0.Add(time.Duration(i) * time.Hour), State: InspectAnswered, AnswerSeconds: &secs})
	}
	if len(h.e) != historyLen {
		t.Fatalf("%d remembered, want %d", len(h.e), historyLen)
	}
	o, full := h.oldest()
	if !full || o != t0.Add(5*time.Hour).UnixMilli() {
		t.Errorf("oldest %v %v, want the 6th", time.UnixMilli(o), full)
	}
	h.add(&Inspection{AskedAt: t0, State: InspectOffline})
	if o, _ := h.oldest(); o != t0.Add(6*time.Hour).UnixMilli() {
		t.Errorf("after one more, oldest %v", time.UnixMilli(o))
	}
}
