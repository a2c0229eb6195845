package alarms

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestSyncReportsLoss: when the store fails while firewatch stops, Sync
// no longer returns as if the events were stored: once the drain grace
// gave them up (logged as LOST), it returns ErrNotStored, so that the
// pipeline does not acknowledge the message that caused them (the device
// sends it again to the next run). An event stored before still syncs
// clean, an event queued when Run returned is not stored either, and a
// later Run with a working store syncs clean again.
func TestSyncReportsLoss(t *testing.T) {
	r := newTestRules(t)
	m, err := NewManager(testConfig(t), testLedger(t, "http://127.0.0.1:1/a", "http://127.0.0.1:1/b"))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	m.grace = 100 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	runDone := make(chan error, 1)
	go func() { runDone <- m.Run(ctx) }()

	m.Submit(raise(r.cableTemp, devElectrical, 1, 75, 12_000))
	if err := m.Sync(); err != nil {
		t.Fatalf("Sync of a stored event: %v", err)
	}

	heal := failInserts(t, m)
	m.Submit(raise(r.smoke, devSmoke, 0, 1, 0))
	synced := make(chan error, 1)
	go func() { synced <- m.Sync() }()
	m.Stopping()
	select {
	case err := <-synced:
		if !errors.Is(err, ErrNotStored) {
			t.Errorf("Sync after the event was given up at shutdown = %v, want ErrNotStored", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Sync still waiting 10 s after Stopping")
	}
	cancel()
	if err := <-runDone; err == nil {
		t.Error("Run did not report the lost event")
	}

	// Queued after Run returned: not stored.
	m.Submit(raise(r.residual, devElectrical, 0, 356, 12_000))
	if err := m.Sync(); !errors.Is(err, ErrNotStored) {
		t.Errorf("Sync of an event queued after Run returned = %v, want ErrNotStored", err)
	}

	// The next Run, with a working store, stores it, and Sync says so.
	heal()
	ctx2, cancel2 := context.WithCancel(context.Background())
	go func() { runDone <- m.Run(ctx2) }()
	poll(t, "the second Run started", func() bool {
		m.progressMu.Lock()
		defer m.progressMu.Unlock()
		return !m.stopped
	})
	m.Submit(raise(r.cableTemp, devElectrical, 2, 75, 12_000))
	if err := m.Sync(); err != nil {
		t.Errorf("Sync in a new Run with a working store: %v", err)
	}
	cancel2()
	if err := <-runDone; err != nil {
		t.Errorf("second Run: %v", err)
	}
}
