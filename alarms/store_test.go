package alarms

import (
	"path/filepath"
	"testing"

	"github.com/firewatch-iot/firewatch/internal/testenv"
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
