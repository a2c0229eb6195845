package registry

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
	"github.com/firewatch-iot/firewatch/internal/testenv"
)

// TestFollowNotified (issue 15, notify.go): on PostgreSQL a follower hears
// each commit at once instead of at its next poll. B polls once an hour:
// devices committed through A are live on B anyway, each within
// milliseconds. Fault: B's LISTEN connection is terminated by the server
// and a device committed before it listens again is live on B once it
// does (no notification of it ever reaches B). Before the notifications B
// saw nothing for an hour.
func TestFollowNotified(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	pg := testenv.StartPostgres(t)
	location := pg.NewDatabase(t)
	ledger := ledgerFile(t, t.TempDir(), nil)
	a := newInstance(t, location, ledger)
	b := newInstance(t, location, ledger)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		b.s.Follow(ctx, FollowOptions{Interval: time.Hour, Logger: testLogger(t)})
	}()
	t.Cleanup(func() { cancel(); <-done })
	listener := func() (pid int) {
		err := a.s.db.QueryRowContext(context.Background(), `SELECT pid FROM pg_stat_activity
			WHERE datname = current_database() AND query = 'LISTEN `+notifyChannel+`'`).Scan(&pid)
		if err != nil {
			return 0
		}
		return pid
	}
	testenv.WaitFor(t, 10*time.Second, "B listening", func() bool { return b.s.follow.listening.Load() == 1 && listener() != 0 })
	add := func(id string) time.Time {
		a.commit(t, &devices.Change{UpsertDevices: []devices.DeviceEntry{{ID: id, Kind: "smoke", Grid: "450204002003"}}})
		return time.Now()
	}
	live := func(id string) bool { _, ok := b.lv.Load().LookupID(id); return ok }
	var took []time.Duration
	for i := range 5 {
		id := fmt.Sprintf("sm-n%d", i)
		at := add(id)
		testenv.WaitFor(t, 10*time.Second, id+" live on B", func() bool { return live(id) })
		took = append(took, time.Since(at))
	}
	t.Logf("a commit through A live on B after %v (B polls once an hour)", took)

	// The server ends B's LISTEN connection; a device is committed before
	// B listens again.
	old := listener()
	var ended bool
	if err := a.s.db.QueryRowContext(context.Background(), `SELECT pg_terminate_backend($1)`, old).Scan(&ended); err != nil || !ended {
		t.Fatalf("terminating B's listener (pid %d): %v %v", old, ended, err)
	}
	add("sm-while-deaf")
	testenv.WaitFor(t, 20*time.Second, "sm-while-deaf live on B after B listens again", func() bool { return live("sm-while-deaf") })
	testenv.WaitFor(t, 20*time.Second, "B listening on a new connection", func() bool { p := listener(); return p != 0 && p != old })
	add("sm-after")
	testenv.WaitFor(t, 10*time.Second, "sm-after live on B", func() bool { return live("sm-after") })
	sameAsStore(t, b.s, b.lv)
}
