package alarms

import (
	"bytes"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreNewerSchemaRefused: a rollback to an older firewatch over a store
// that a newer one migrated refuses to start with a message that says what
// to do, and leaves the store as it was (issue 17).
func TestStoreNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "alarms.db")
	s, err := openStore(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, 0)`, len(migrations)+1); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, err = openStore(path)
	if err == nil || !strings.Contains(err.Error(), "newer than this firewatch") || !strings.Contains(err.Error(), "restore the backup") {
		t.Fatalf("opening a newer store: %v, want a refusal that says what to do", err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Error("the refused store was changed")
	}
}
