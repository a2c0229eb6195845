package registry

import (
	"path/filepath"
)

// Settings is the `registry:` section of firewatch's configuration.
type Settings struct {
	// DB is where the registry is kept: a SQLite file or a postgres://
	// URL. Empty: registry.db beside the SQLite alarm store, or the alarm
	// store's own PostgreSQL database (docs/registry.md says why not the
	// alarm store's SQLite file).
	DB string `yaml:"db" help:"SQLite file or postgres:// URL of the device registry (default: registry.db beside a SQLite alarms.db, or alarms.db's PostgreSQL database)" secret:"true"`
}

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
