package logbudget

import (
	"testing"
	"time"
)

// Within a second PerSecond lines pass and the rest are held back; the
// first line of the next second passes and carries the count, once.
func TestBudget(t *testing.T) {
	var b Budget
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for i := range PerSecond + 3 {
		ok, dropped := b.Take(t0.Add(time.Duration(i) * time.Millisecond))
		if ok != (i < PerSecond) || dropped != 0 {
			t.Fatalf("line %d: ok %v dropped %d", i, ok, dropped)
		}
	}
	t1 := t0.Add(1500 * time.Millisecond)
	if ok, dropped := b.Take(t1); !ok || dropped != 3 {
		t.Fatalf("next second: ok %v dropped %d, want true 3", ok, dropped)
	}
	if ok, dropped := b.Take(t1.Add(time.Millisecond)); !ok || dropped != 0 {
		t.Fatalf("then: ok %v dropped %d, want true 0", ok, dropped)
	}
}
