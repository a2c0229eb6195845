package alarms

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/firewatch-iot/firewatch/internal/testenv"
	"github.com/firewatch-iot/firewatch/rules"
)

// pg, while TestPostgres runs, makes testDB hand out PostgreSQL databases.
var pg *testenv.Postgres

// testDB returns the store location for a test: a SQLite file, or a fresh
// database of the PostgreSQL cluster under TestPostgres.
func testDB(t testing.TB) string {
	if pg != nil {
		return pg.NewDatabase(t)
	}
	return filepath.Join(t.TempDir(), "alarms.db")
}

// storeSuite is the store test-suite: every test of the package that goes
// through the store. TestPostgres runs it against a real PostgreSQL; the
// ordinary run covers SQLite.
var storeSuite = []struct {
	name string
	f    func(*testing.T)
}{
	{"Lifecycle", TestLifecycle},
	{"ResponderSupport", TestResponderSupport}, // issue 16
	{"FireNotAutoClosed", TestFireNotAutoClosed},
	{"Retry", TestRetry},
	{"Restart", TestRestart},
	{"SlowStationDoesNotBlockOthers", TestSlowStationDoesNotBlockOthers},
	{"Drain", TestDrain},
	{"RejectedEvents", TestRejectedEvents},
	{"Sync", TestSync},
	{"API", TestAPI},
	{"APIGet", TestAPIGet},
	{"APIActions", TestAPIActions},
	{"TransitionsThroughStore", TestTransitionsThroughStore},
	{"AutomaticTransitions", TestAutomaticTransitions},
	{"Routing", TestRouting},
	{"Escalation", TestEscalation},
	{"Storm", TestStorm},
	{"StormFireNotGrouped", TestStormFireNotGrouped},
	{"Flapping", TestFlapping},
	{"LinkageOutcomes", TestLinkageOutcomes},
	{"Robots", TestRobots},
	{"ConsoleFanOut", TestConsoleFanOut},
	{"Digests", TestDigests},
	{"Repoint", TestRepoint},
}

// TestPostgres runs the store test-suite against a private PostgreSQL
// cluster (Debian's package postgresql).
func TestPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a PostgreSQL cluster")
	}
	pg = testenv.StartPostgres(t)
	defer func() { pg = nil }()
	for _, tt := range storeSuite {
		t.Run(tt.name, tt.f)
	}
	for _, tt := range pgOnlySuite {
		t.Run(tt.name, tt.f)
	}
}

func TestRebind(t *testing.T) {
	for in, want := range map[string]string{
		`SELECT 1`: `SELECT 1`,
		`SELECT id FROM a WHERE x = ? AND y = '?' AND z IN (?, ?)`: `SELECT id FROM a WHERE x = $1 AND y = '?' AND z IN ($2, $3)`,
		`UPDATE a SET s = 'it''s' WHERE id = ?`:                    `UPDATE a SET s = 'it''s' WHERE id = $1`,
	} {
		if got := rebind(in); got != want {
			t.Errorf("rebind(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRepoint: pending pushes follow a station's endpoint fixed in the
// ledger, and the brigade's fixed in the configuration; delivered pushes,
// robots and stations gone from the ledger keep theirs.
func TestRepoint(t *testing.T) {
	s, err := openStore(testDB(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.close() })
	ctx := context.Background()
	now := time.Now()
	a := Alarm{Device: "d1", Kind: "smoke", Rule: "r1", Metric: "smoke", Unit: "", Severity: rules.SeverityFire.String(),
		State: StateRaised, Grid: "450204001001", Station: "s1"}
	id, err := s.write.insertAlarm(ctx, &a, 1, 1, 1, now)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []newPush{
		{target: "station", station: "s1", endpoint: "http://old/s1", key: "k1"},
		{target: "station", station: "s1", endpoint: "http://old/s1", key: "k2"}, // delivered below
		{target: "station", station: "gone", endpoint: "http://old/gone", key: "k3"},
		{target: "brigade", endpoint: "http://old/brigade", key: "k4"},
		{target: "robot:wecom:4502:0", endpoint: "http://robot", key: "k5"},
	} {
		p.alarmID, p.transition, p.body = id, TransitionRaised, []byte("{}")
		if err := s.write.insertPush(ctx, p, now); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.w.Exec(`UPDATE outbox SET delivered_at_ms = 1 WHERE idempotency_key = 'k2'`); err != nil {
		t.Fatal(err)
	}
	n, err := s.repoint(ctx, func(st string) string {
		if st == "s1" {
			return "http://new/s1"
		}
		return ""
	}, "http://new/brigade")
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("repointed %d pushes, want 2", n)
	}
	want := map[string]string{"k1": "http://new/s1", "k2": "http://old/s1", "k3": "http://old/gone",
		"k4": "http://new/brigade", "k5": "http://robot"}
	for key, ep := range want {
		var got string
		if err := s.r.QueryRow(`SELECT endpoint FROM outbox WHERE idempotency_key = ?`, key).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != ep {
			t.Errorf("push %s goes to %s, want %s", key, got, ep)
		}
	}
}
