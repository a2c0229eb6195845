package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// The alarm store: every SQL statement of the package is in the store_*.go
// files, behind a named method (store_schema.go: the migrations;
// store_alarms.go, store_outbox.go, store_incidents.go, store_commands.go,
// store_stations.go: one table each; store_postgres.go: PostgreSQL). The
// rest of the package calls those methods and writes no SQL.

// store is the SQLite alarm store: one writer connection (SQLite has one
// writer at a time anyway; a single connection avoids SQLITE_BUSY between
// our own writers) and a small pool of readers, which WAL lets run beside
// the writer.
type store struct {
	w  *sql.DB
	r  *sql.DB
	pg bool // PostgreSQL: w and r are one pool
	// read runs statements on the reader pool, write on the writer.
	read, write queries
}

// dbtx is what a pool (*sql.DB) and a transaction (*sql.Tx) share.
type dbtx interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// queries runs the store's named statements on a pool or in a transaction.
type queries struct{ db dbtx }

// storeTx is one write transaction: the named statements, committed
// together or not at all.
type storeTx struct {
	queries
	tx *sql.Tx
}

// openStore opens the SQLite file at path, or the PostgreSQL database when
// path is a postgres:// URL.
func openStore(path string) (*store, error) {
	if isPostgres(path) {
		db, err := openPostgres(path)
		if err != nil {
			return nil, fmt.Errorf("open alarm store: %w", err)
		}
		s := newStore(db, db, true)
		if err := s.migrate(); err != nil {
			db.Close()
			return nil, fmt.Errorf("open alarm store on PostgreSQL: %w", err)
		}
		return s, nil
	}
	// synchronous(FULL): a committed alarm survives a power cut, not only a
	// crash of the process. Commits are batched, so the fsync is shared.
	const common = "_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)"
	w, err := sql.Open("sqlite", path+"?"+common+"&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
	if err != nil {
		return nil, fmt.Errorf("open alarm store %s: %w", path, err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := newStore(w, nil, false)
	if err := s.migrate(); err != nil {
		w.Close()
		return nil, fmt.Errorf("open alarm store %s: %w", path, err)
	}
	r, err := sql.Open("sqlite", path+"?"+common+"&_pragma=query_only(1)")
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("open alarm store %s for reading: %w", path, err)
	}
	r.SetMaxOpenConns(4)
	s.r, s.read = r, queries{r}
	return s, nil
}

func newStore(w, r *sql.DB, pg bool) *store {
	return &store{w: w, r: r, pg: pg, read: queries{r}, write: queries{w}}
}

func (s *store) close() error {
	if s.pg {
		return s.w.Close()
	}
	return errors.Join(s.r.Close(), s.w.Close())
}

// snapshot is the options of a read transaction that sees one state of
// the store across several statements: SQLite (WAL) reads one snapshot from
// a transaction's first statement; PostgreSQL's default, READ COMMITTED,
// takes one per statement, so REPEATABLE READ.
func (s *store) snapshot() *sql.TxOptions {
	if s.pg {
		return &sql.TxOptions{ReadOnly: true, Isolation: sql.LevelRepeatableRead}
	}
	return nil
}

// begin starts a write transaction. Callers defer rollback, which does
// nothing once commit succeeded.
func (s *store) begin(ctx context.Context) (*storeTx, error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("begin: %w", err)
	}
	return &storeTx{queries{tx}, tx}, nil
}

func (t *storeTx) commit() error {
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (t *storeTx) rollback() { t.tx.Rollback() }

// changed reports whether an UPDATE guarded by a compare-and-set condition
// found its row: on PostgreSQL another writer may have changed the row since
// it was read.
func changed(res sql.Result, err error) (bool, error) {
	if err != nil {
		return false, err
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// collect reads every row a query returns with scan, and closes the rows
// before it returns, so that the caller may act on each row in its own
// transaction.
func collect[T any](rows *sql.Rows, err error, scan func(sc scanner, v *T) error) ([]T, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		var v T
		if err := scan(rows, &v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// scanID scans a single id column.
func scanID(sc scanner, id *int64) error { return sc.Scan(id) }

type scanner interface{ Scan(dest ...any) error }

// nullable stores 0 as NULL, for optional ids.
func nullable(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// storableText makes a text from outside (a receiver's error answer, a
// device's ack) storable in both stores: valid UTF-8 without NUL bytes
// (PostgreSQL refuses both in TEXT), at most max bytes.
func storableText(s string, max int) string {
	if len(s) > max {
		s = s[:max]
	}
	return strings.ReplaceAll(strings.ToValidUTF8(s, ""), "\x00", "")
}
