package registry

import (
	"path/filepath"
	"time"
)

// Settings is the `registry:` section of firewatch's configuration.
type Settings struct {
	// DB is where the registry is kept: a SQLite file or a postgres://
	// URL. Empty: registry.db beside the SQLite alarm store, or the alarm
	// store's own PostgreSQL database (docs/registry.md says why not the
	// alarm store's SQLite file).
	DB string `yaml:"db" help:"SQLite file or postgres:// URL of the device registry (default: registry.db beside a SQLite alarms.db, or alarms.db's PostgreSQL database)" secret:"true"`
	// FollowInterval is how often this instance looks for registry changes
	// other instances (or `firewatch registry import`) committed to the
	// store (issue 15, follow.go); 0: DefaultFollowInterval.
	FollowInterval time.Duration `yaml:"follow_interval" help:"how often to look for registry changes committed by other instances sharing the store (0: 1s)"`
	// FollowNotify makes a PostgreSQL store's follower LISTEN for commit
	// notifications and look at once (notify.go); off behind a connection
	// pooler that does not keep a session per client (PgBouncer in
	// transaction mode), where only the poll works.
	FollowNotify bool `yaml:"follow_notify" help:"on PostgreSQL, LISTEN for registry commits and follow them at once (off behind a transaction-mode pooler: polling only)"`
}

// DefaultSettings are the registry's defaults.
func DefaultSettings() Settings { return Settings{FollowNotify: true} }

// Location resolves DB against the alarm store's location alarmsDB.
func (s Settings) Location(alarmsDB string) string {
	switch {
	case s.DB != "":
		return s.DB
	case IsPostgres(alarmsDB):
		return alarmsDB
	default:
		return filepath.Join(filepath.Dir(alarmsDB), "registry.db")
	}
}
