package alarms

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/firewatch-iot/firewatch/rules"
)

// TestGetOneSnapshot: an alarm read while others move it (a dispatcher's
// console, the responder page) is one state of the store: its state is the
// last change in its history, as the transaction that moved it wrote them
// together. Before, the alarm's row, pushes, history and commands were read
// by separate statements, and a transition committed between two of them
// showed an alarm "acknowledged" whose history ended at "raised" (and a
// command acknowledged without its note: a TestLinkage failure in CI).
func TestGetOneSnapshot(t *testing.T) {
	testGetOneSnapshot(t, testDB(t))
}

func testGetOneSnapshot(t *testing.T, db string) {
	const n = 24
	m, _, ids := chargerAlarms(t, db, n)
	var done atomic.Bool
	var reads, torn atomic.Int64
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := 0; !done.Load(); i++ {
				a, err := m.store.get(context.Background(), ids[i%n])
				if err != nil {
					t.Error(err)
					return
				}
				reads.Add(1)
				if h := a.History; len(h) > 0 && h[len(h)-1].To != a.State {
					if torn.Add(1) == 1 {
						t.Errorf("alarm %s read as %s with its history ending at %s", a.ID, a.State, h[len(h)-1].To)
					}
				}
			}
		})
	}
	for _, to := range []State{StateAcknowledged, StateDispatched, StateArrived, StateResolved} {
		for _, id := range ids {
			if _, err := m.transition(context.Background(), id, to, ActorSystem, "test"); err != nil {
				t.Fatal(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	t.Logf("%d reads during %d transitions, %d torn", reads.Load(), 4*n, torn.Load())
}

// chargerAlarms opens a manager on db that delivers nothing (not run; its
// receivers are unreachable) and raises n slot-temperature alarms of the
// test charger, channels 1 to n, in one batch. It returns the manager,
// the rules and the alarms' ids.
func chargerAlarms(t *testing.T, db string, n int) (*Manager, testRules, []int64) {
	t.Helper()
	l := testLedger(t, "http://127.0.0.1:1/", "http://127.0.0.1:1/other")
	cfg := testConfig(t)
	cfg.DBPath = db
	m, err := NewManager(cfg, l)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	r := newTestRules(t)
	var evs []rules.Event
	for ch := 1; ch <= n; ch++ {
		evs = append(evs, raise(r.slotTemp, devCharger, uint8(ch), 70, 0))
	}
	if _, err := m.apply(evs); err != nil {
		t.Fatal(err)
	}
	ids, err := m.store.listIDs(context.Background(), Filter{Device: l.Devices[devCharger].ID, Limit: MaxLimit})
	if err != nil || len(ids) != n {
		t.Fatalf("%d alarms (%v), want %d", len(ids), err, n)
	}
	return m, r, ids
}
