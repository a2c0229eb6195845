package alarms

import (
	"context"
	"sync"
	"testing"

	"github.com/firewatch-iot/firewatch/rules"
)

// TestDeliveredWhileCleared: an alarm's station push is answered (the
// outbox marks the alarm pushed) while the rule engine clears the alarm,
// at the same moment. Each must take the other into account without an
// error: the outbox leaves an alarm that is no longer raised as it is, and
// a clear that finds the alarm pushed meanwhile reads it again at once.
// Before, on PostgreSQL, the outbox read the state and moved it in two
// statements and the clear moved the state it had read, so either could
// meet the other's commit in between: "outbox update failed … alarm changed
// state meanwhile" at ERROR and a retry after the outbox backoff, or the
// clear's "alarm event failed to commit, retrying" counted as a store
// failure, its closing push held back by the backoff (seen in make
// cluster). On SQLite a write transaction holds the database from its
// BEGIN, so the race cannot happen there; the test runs on both.
func TestDeliveredWhileCleared(t *testing.T) {
	testDeliveredWhileCleared(t, testDB(t))
}

func testDeliveredWhileCleared(t *testing.T, db string) {
	const n = 48
	m, r, ids := chargerAlarms(t, db, n)
	ctx := context.Background()
	eps, _, err := m.store.pendingEndpoints(ctx)
	if err != nil || len(eps) == 0 {
		t.Fatalf("pending endpoints %v: %v", eps, err)
	}
	var raced, conflicts int
	for _, ep := range eps {
		for {
			// The raised pushes were queued first: they come before the
			// closing pushes the clears below queue.
			row, err := m.store.nextPending(ctx, ep)
			if err != nil {
				t.Fatal(err)
			}
			if row == nil || row.transition != TransitionRaised {
				break
			}
			a, err := m.store.get(ctx, row.alarmID)
			if err != nil {
				t.Fatal(err)
			}
			raced++
			var derr error
			whileCleared(t, m, r, a, func() { _, derr = m.store.markDelivered(ctx, row, m.now()) })
			if derr != nil {
				conflicts++
				t.Errorf("push %s answered while alarm %s cleared: %v", row.key, a.ID, derr)
				// What the outbox does: retry.
				if _, err := m.store.markDelivered(ctx, row, m.now()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if raced != n {
		t.Fatalf("%d raised pushes raced, want %d", raced, n)
	}
	if f := m.storeFailures.Load(); f != 0 {
		t.Errorf("%d clears failed to commit and were retried after a backoff (another writer's change between their read and write)", f)
	}
	closedByClears(t, m, ids)
	t.Logf("%d pushes answered during clears: %d outbox conflicts, %d clears retried after a backoff",
		raced, conflicts, m.storeFailures.Load())
}

// TestCommandAckWhileCleared: a charger's answer to its cut_power command
// is recorded (on the command, and as a note in the alarm's history, with
// the alarm's state) while the rule engine clears the alarm, at the same
// moment. The note must not record a state the alarm has left: before,
// on PostgreSQL, the note read the state without locking the alarm, a
// clear could commit between the read and the note, and the history ended
// at "raised" after the "auto_cleared" it had just recorded. On SQLite a
// write transaction holds the database from its BEGIN; the test runs on
// both.
func TestCommandAckWhileCleared(t *testing.T) {
	testCommandAckWhileCleared(t, testDB(t))
}

func testCommandAckWhileCleared(t *testing.T, db string) {
	const n = 48
	m, r, ids := chargerAlarms(t, db, n)
	ctx := context.Background()
	cs, err := m.store.read.pendingCommands(ctx)
	if err != nil || len(cs) != n {
		t.Fatalf("%d pending commands (%v), want one per alarm, %d", len(cs), err, n)
	}
	for _, c := range cs {
		a, err := m.store.get(ctx, c.alarmID)
		if err != nil {
			t.Fatal(err)
		}
		var aerr error
		whileCleared(t, m, r, a, func() { aerr = m.CommandAck(ctx, c.device, []byte(`{"id":"`+c.key+`","ok":true}`)) })
		if aerr != nil {
			t.Errorf("command %s answered while alarm %s cleared: %v", c.key, a.ID, aerr)
		}
	}
	closedByClears(t, m, ids)
}

// whileCleared runs f at the same moment as the commit of a's clear (the
// rule engine's, its slot temperature back to 40 °C), and fails if the
// clear was lost.
func whileCleared(t *testing.T, m *Manager, r testRules, a Alarm, f func()) {
	t.Helper()
	start := make(chan struct{})
	var wg sync.WaitGroup
	var lost int
	wg.Go(func() {
		<-start
		lost = m.commit(context.Background(), []rules.Event{clearEv(r.slotTemp, devCharger, uint8(a.Channel), 40)})
	})
	close(start)
	f()
	wg.Wait()
	if lost != 0 {
		t.Fatalf("alarm %s: its clear lost", a.ID)
	}
}

// closedByClears checks that every alarm of ids was closed by its clear and
// that its history ends where its state is.
func closedByClears(t *testing.T, m *Manager, ids []int64) {
	t.Helper()
	for _, id := range ids {
		a, err := m.store.get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if h := a.History; a.State != StateAutoCleared || len(h) == 0 || h[len(h)-1].To != a.State {
			t.Errorf("alarm %s: %s, history ends %+v", a.ID, a.State, h[max(len(h)-2, 0):])
		}
	}
}
