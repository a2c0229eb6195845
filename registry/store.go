package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"github.com/firewatch-iot/firewatch/devices"
)

// Store keeps the registry and its audit history in SQLite or PostgreSQL,
// in tables of its own (registry_*). Changes go through Commit, which also
// makes them take effect live once the store has them.
type Store struct {
	db *sql.DB
	// rd reads SQLite beside the writer (WAL), so that reads (the admin
	// API, the start-up scan) neither wait for a long import's transaction
	// nor take the write lock. nil on PostgreSQL (db reads).
	rd *sql.DB
	pg bool
	// pgcfg is the PostgreSQL connection's configuration, for the
	// follower's LISTEN connection (notify.go).
	pgcfg *pgx.ConnConfig

	// mu serializes Commit in this process: validation against the live
	// snapshot, the transaction and the live adoption happen as one step.
	mu    sync.Mutex
	live  *devices.Live
	check func(*devices.Ledger, *devices.Diff) error // SetCheck; nil: none
	now   func() time.Time

	// Issue 15 (follow.go): the store version the live registry reflects
	// (every commit up to it, none after), under mu; 0: unknown (the
	// follower then compares the whole registry). Several instances share
	// one store: what the others commit is applied by Sync.
	applied uint64
	follow  *followState
}

// IsPostgres reports whether a store location is a PostgreSQL URL rather
// than a SQLite file.
func IsPostgres(location string) bool {
	return strings.HasPrefix(location, "postgres://") || strings.HasPrefix(location, "postgresql://")
}

// Open opens the registry store at location: a SQLite file, created if
// missing, or a postgres:// URL, and brings its schema up to date.
func Open(location string) (*Store, error) {
	s := &Store{now: time.Now, follow: newFollowState()}
	if IsPostgres(location) {
		cfg, err := pgx.ParseConfig(location)
		if err != nil {
			return nil, fmt.Errorf("open registry store: parse PostgreSQL URL: %w", err) // pgx redacts the password
		}
		s.db, s.pgcfg = sql.OpenDB(stdlib.GetConnector(*cfg)), cfg
		s.db.SetMaxOpenConns(4)
		s.pg = true
	} else {
		// One connection: SQLite has one writer at a time, and reads are
		// rare (start-up, the admin API). synchronous(FULL) as the alarm
		// store: an acknowledged change survives a power cut.
		db, err := sql.Open("sqlite", location+"?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)&_txlock=immediate")
		if err != nil {
			return nil, fmt.Errorf("open registry store %s: %w", location, err)
		}
		db.SetMaxOpenConns(1)
		db.SetConnMaxLifetime(0)
		db.SetConnMaxIdleTime(0)
		s.db = db
	}
	if err := s.migrate(context.Background()); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("open registry store: %w", err)
	}
	if !s.pg {
		rd, err := sql.Open("sqlite", location+"?_pragma=busy_timeout(10000)&_pragma=query_only(1)")
		if err != nil {
			s.db.Close()
			return nil, fmt.Errorf("open registry store %s for reading: %w", location, err)
		}
		rd.SetMaxOpenConns(2)
		s.rd = rd
	}
	return s, nil
}

// Close closes the database.
func (s *Store) Close() error {
	if s.rd != nil {
		s.rd.Close()
	}
	return s.db.Close()
}

// reader is the pool reads go to.
func (s *Store) reader() *sql.DB {
	if s.rd != nil {
		return s.rd
	}
	return s.db
}

// Attach hands the store the live registry that Commit changes. Until it
// is attached, Commit fails.
func (s *Store) Attach(lv *devices.Live) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live = lv
}

// SetCheck adds a check that Commit (and its dry run) makes of the
// registry a change would make, after the ledger's own validation: firewatch
// checks rule overrides against the rules in force and secret hashes. Its
// error is returned as is (a *devices.LoadError names entries and fields).
func (s *Store) SetCheck(f func(*devices.Ledger, *devices.Diff) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.check = f
}

// q turns the "?" placeholders of a statement into PostgreSQL's $1, $2, …
// when the store is PostgreSQL. The registry's SQL has no "?" inside
// string literals.
func (s *Store) q(query string) string {
	if !s.pg || !strings.Contains(query, "?") {
		return query
	}
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		if query[i] == '?' {
			n++
			b.WriteByte('$')
			b.WriteString(strconv.Itoa(n))
			continue
		}
		b.WriteByte(query[i])
	}
	return b.String()
}

// migrations are applied in order, each once, recorded in
// registry_migrations. Never edit one that has shipped: append.
//
// Devices are kept in seq order (their order in the ledger; new ones at the
// end) so that a restart builds the same indices. On SQLite seq is the
// rowid, so the start-up scan reads the table in storage order. rev is the
// registry version that last wrote the row: the entity's ETag. Times are
// Unix milliseconds.
var migrations = []string{
	`CREATE TABLE registry_meta (
		key   TEXT PRIMARY KEY,
		value TEXT NOT NULL
	);
	CREATE TABLE registry_places (
		code TEXT PRIMARY KEY,
		name TEXT NOT NULL,
		rev  BIGINT NOT NULL
	);
	CREATE TABLE registry_stations (
		seq      INTEGER PRIMARY KEY,
		id       TEXT NOT NULL UNIQUE,
		name     TEXT NOT NULL,
		grids    TEXT NOT NULL,
		endpoint TEXT NOT NULL,
		lat      DOUBLE PRECISION NOT NULL,
		lon      DOUBLE PRECISION NOT NULL,
		rev      BIGINT NOT NULL
	);
	CREATE TABLE registry_gateways (
		seq         INTEGER PRIMARY KEY,
		id          TEXT NOT NULL UNIQUE,
		secret_hash TEXT NOT NULL,
		rev         BIGINT NOT NULL
	);
	CREATE TABLE registry_devices (
		seq          INTEGER PRIMARY KEY,
		id           TEXT NOT NULL UNIQUE,
		kind         TEXT NOT NULL,
		grid         TEXT NOT NULL,
		station      TEXT NOT NULL,
		gateway      TEXT NOT NULL,
		info         TEXT NOT NULL,
		lat          DOUBLE PRECISION NOT NULL,
		lon          DOUBLE PRECISION NOT NULL,
		channels     INTEGER NOT NULL,
		rules        TEXT NOT NULL,
		heartbeat_ms BIGINT NOT NULL,
		secret_hash  TEXT NOT NULL,
		nbiot        TEXT NOT NULL,
		line         INTEGER NOT NULL,
		rev          BIGINT NOT NULL
	);
	CREATE TABLE registry_audit (
		id        INTEGER PRIMARY KEY AUTOINCREMENT,
		at_ms     BIGINT NOT NULL,
		actor     TEXT NOT NULL,
		source    TEXT NOT NULL,
		version   BIGINT NOT NULL,
		entity    TEXT NOT NULL,
		entity_id TEXT NOT NULL,
		action    TEXT NOT NULL,
		before    TEXT NOT NULL,
		after     TEXT NOT NULL
	);
	CREATE INDEX registry_audit_entity ON registry_audit (entity, entity_id, id);
	CREATE TABLE registry_imports (
		path  TEXT PRIMARY KEY,
		hash  TEXT NOT NULL,
		at_ms BIGINT NOT NULL,
		body  BYTEA NOT NULL
	);`,
	// Issue 15: the follower of another instance reads the audit records
	// of the versions it has not applied yet (follow.go).
	`CREATE INDEX registry_audit_version ON registry_audit (version)`,
}

func (s *Store) migrate(ctx context.Context) error {
	if _, err := s.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS registry_migrations (
		version       INTEGER PRIMARY KEY,
		applied_at_ms BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("create registry_migrations: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if s.pg {
		// Two instances starting together on one PostgreSQL: one migrates.
		if _, err := tx.ExecContext(ctx, `LOCK TABLE registry_migrations IN EXCLUSIVE MODE`); err != nil {
			return err
		}
	}
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM registry_migrations`).Scan(&have); err != nil {
		return err
	}
	for v := have + 1; v <= len(migrations); v++ {
		for _, stmt := range s.statements(migrations[v-1]) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		if _, err := tx.ExecContext(ctx, s.q(`INSERT INTO registry_migrations (version, applied_at_ms) VALUES (?, ?)`), v, s.now().UnixMilli()); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// statements splits a migration into statements, adapting the one column
// type SQLite and PostgreSQL spell differently.
func (s *Store) statements(script string) []string {
	if s.pg {
		script = strings.ReplaceAll(script, "INTEGER PRIMARY KEY AUTOINCREMENT", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
		script = strings.ReplaceAll(script, "seq      INTEGER PRIMARY KEY", "seq      BIGINT PRIMARY KEY")
		script = strings.ReplaceAll(script, "seq         INTEGER PRIMARY KEY", "seq         BIGINT PRIMARY KEY")
		script = strings.ReplaceAll(script, "seq          INTEGER PRIMARY KEY", "seq          BIGINT PRIMARY KEY")
	} else {
		script = strings.ReplaceAll(script, "BYTEA", "BLOB")
	}
	var out []string
	for _, st := range strings.Split(script, ";") {
		if st = strings.TrimSpace(st); st != "" {
			out = append(out, st)
		}
	}
	return out
}

// Version is the registry's version: 0 while the store holds no registry,
// then one more for every commit.
func (s *Store) Version(ctx context.Context) (uint64, error) {
	return metaVersion(ctx, s.db, s)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func metaVersion(ctx context.Context, db querier, s *Store) (uint64, error) {
	var v string
	err := db.QueryRowContext(ctx, s.q(`SELECT value FROM registry_meta WHERE key = ?`), "version").Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("registry version: %w", err)
	}
	return strconv.ParseUint(v, 10, 64)
}

// Load reads the whole registry in one pass per table. It is the start-up
// path: at a million devices every column is a plain value, nothing is
// decoded per row but the rule overrides' text.
func (s *Store) Load(ctx context.Context) (*devices.Entries, error) {
	e := &devices.Entries{Places: map[string]string{}}
	tx, err := s.reader().BeginTx(ctx, &sql.TxOptions{ReadOnly: s.pg})
	if err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	defer tx.Rollback()
	if err := s.loadInto(ctx, tx, e); err != nil {
		return nil, fmt.Errorf("load registry: %w", err)
	}
	return e, nil
}

func (s *Store) loadInto(ctx context.Context, tx *sql.Tx, e *devices.Entries) error {
	n, err := s.loadHead(ctx, tx, e)
	if err != nil {
		return err
	}
	e.Devices, err = s.loadDevices(ctx, tx, n)
	return err
}

// loadHead reads everything but the devices into e and returns the number
// of devices.
func (s *Store) loadHead(ctx context.Context, tx *sql.Tx, e *devices.Entries) (int, error) {
	rows, err := tx.QueryContext(ctx, `SELECT code, name FROM registry_places`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var code, name string
		if err := rows.Scan(&code, &name); err != nil {
			rows.Close()
			return 0, err
		}
		e.Places[code] = name
	}
	if err := closeRows(rows); err != nil {
		return 0, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT id, name, grids, endpoint, lat, lon FROM registry_stations ORDER BY seq`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var st devices.StationEntry
		var grids string
		if err := rows.Scan(&st.ID, &st.Name, &grids, &st.Endpoint, &st.Lat, &st.Lon); err != nil {
			rows.Close()
			return 0, err
		}
		st.Grids = splitGrids(grids)
		e.Stations = append(e.Stations, st)
	}
	if err := closeRows(rows); err != nil {
		return 0, err
	}
	rows, err = tx.QueryContext(ctx, `SELECT id, secret_hash FROM registry_gateways ORDER BY seq`)
	if err != nil {
		return 0, err
	}
	for rows.Next() {
		var g devices.GatewayEntry
		if err := rows.Scan(&g.ID, &g.SecretHash); err != nil {
			rows.Close()
			return 0, err
		}
		e.Gateways = append(e.Gateways, g)
	}
	if err := closeRows(rows); err != nil {
		return 0, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM registry_devices`).Scan(&n); err != nil {
		return 0, err
	}
	var uitds string
	err = tx.QueryRowContext(ctx, s.q(`SELECT value FROM registry_meta WHERE key = ?`), "uitds").Scan(&uitds)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return 0, err
	default:
		if e.UITDs, err = decodeUITDs(uitds); err != nil {
			return 0, fmt.Errorf("uitds: %w", err)
		}
	}
	return n, nil
}

// loadDevices reads the n devices in seq order. (Reading the two halves on
// two connections at once was tried: on this shared machine it measured no
// faster, so it is not here.)
func (s *Store) loadDevices(ctx context.Context, tx *sql.Tx, n int) ([]devices.DeviceEntry, error) {
	return scanDevices(ctx, tx, make([]devices.DeviceEntry, 0, n), `SELECT `+deviceColumns+` FROM registry_devices ORDER BY seq`)
}

// scanDevices appends the devices query q returns to ds.
func scanDevices(ctx context.Context, tx *sql.Tx, ds []devices.DeviceEntry, q string, args ...any) ([]devices.DeviceEntry, error) {
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	var sc deviceScan
	for rows.Next() {
		if err := sc.scan(rows); err != nil {
			rows.Close()
			return nil, err
		}
		ds = append(ds, sc.d)
	}
	return ds, closeRows(rows)
}

func closeRows(rows *sql.Rows) error {
	err := rows.Err()
	return errors.Join(err, rows.Close())
}

// The devices table: one row per device, read whole at every start. The
// free-text fields nothing selects by (model, address, unit, phone and,
// when set, contact) share one column, info, joined by a unit separator
// (0x1F), as do the six names
// of an NB-IoT binding in nbiot ("" for none): each column scanned costs
// the driver two allocations, and at a million devices the start-up scan
// is what firewatch waits for.

// deviceColumns are the columns deviceScan reads, in its order.
const deviceColumns = `id, kind, grid, station, gateway, info, lat, lon, channels, rules, heartbeat_ms, secret_hash, nbiot, line, rev`

// deviceWrite are the columns deviceArgs gives, in its order.
var deviceWrite = []string{"kind", "grid", "station", "gateway", "info", "lat", "lon", "channels", "rules", "heartbeat_ms",
	"secret_hash", "nbiot", "line"}

// insertDevice and updateDevice take deviceArgs, then rev, seq and id
// (insert) or rev and id (update).
var (
	insertDevice = `INSERT INTO registry_devices (` + strings.Join(deviceWrite, ", ") + `, rev, seq, id) VALUES (?` +
		strings.Repeat(", ?", len(deviceWrite)+2) + `)`
	updateDevice = `UPDATE registry_devices SET ` + strings.Join(deviceWrite, " = ?, ") + ` = ?, rev = ? WHERE id = ?`
)

type scanner interface{ Scan(dest ...any) error }

func scanDevice(sc scanner, d *devices.DeviceEntry, rev *int64) error {
	var ds deviceScan
	err := ds.scan(sc)
	*d = ds.d
	if rev != nil {
		*rev = ds.rev
	}
	return err
}

// deviceScan scans device rows without an allocation per row of its own:
// the destinations are set up once, and reused for every row.
type deviceScan struct {
	d                       devices.DeviceEntry
	hb, channels, line, rev int64
	info, nb                string
	dest                    []any
}

func (ds *deviceScan) scan(sc scanner) error {
	if ds.dest == nil {
		d := &ds.d
		ds.dest = []any{&d.ID, &d.Kind, &d.Grid, &d.Station, &d.Gateway, &ds.info, &d.Lat, &d.Lon, &ds.channels,
			&d.Rules, &ds.hb, &d.SecretHash, &ds.nb, &ds.line, &ds.rev}
	}
	ds.d.NBIoT = devices.NBIoT{}
	if err := sc.Scan(ds.dest...); err != nil {
		return err
	}
	d := &ds.d
	d.Heartbeat = time.Duration(ds.hb) * time.Millisecond
	d.Channels, d.Line = int(ds.channels), int(ds.line)
	// Substrings of the one column: no allocation each.
	rest := ds.info
	d.Model, rest, _ = strings.Cut(rest, unitSep)
	d.Address, rest, _ = strings.Cut(rest, unitSep)
	d.Unit, rest, _ = strings.Cut(rest, unitSep)
	d.Phone, d.Contact, _ = strings.Cut(rest, unitSep) // rows written before the contact: ""
	if ds.nb != "" {
		d.NBIoT = unpackNBIoT(ds.nb)
	}
	return nil
}

func deviceArgs(d *devices.DeviceEntry) []any {
	info := ""
	if d.Model != "" || d.Address != "" || d.Unit != "" || d.Phone != "" {
		info = d.Model + unitSep + d.Address + unitSep + d.Unit + unitSep + d.Phone
	}
	if d.Contact != "" { // a fifth part only when set: rows without one are as before
		info = d.Model + unitSep + d.Address + unitSep + d.Unit + unitSep + d.Phone + unitSep + d.Contact
	}
	return []any{d.Kind, d.Grid, d.Station, d.Gateway, info, d.Lat, d.Lon, d.Channels, d.Rules,
		d.Heartbeat.Milliseconds(), d.SecretHash, packNBIoT(d.NBIoT), d.Line}
}

// An NB-IoT binding is one column, its six names joined by a unit
// separator (0x1F), "" for none: most rows of a million have none or are
// read at every start, and one column is cheaper to scan than six.
const unitSep = "\x1f"

func packNBIoT(n devices.NBIoT) string {
	if n == (devices.NBIoT{}) {
		return ""
	}
	return strings.Join([]string{n.IMEI, n.PlatformID, n.Serial, n.Product, n.Responsible, n.Mobile}, unitSep)
}

// storable refuses the one thing the ledger allows and the store cannot
// keep: a unit separator inside a field kept in a joined column.
func storable(ds []devices.DeviceEntry) error {
	var probs []devices.Problem
	for i := range ds {
		d := &ds[i]
		n := d.NBIoT
		for _, f := range [...]struct{ field, v string }{{"model", d.Model}, {"address", d.Address}, {"unit", d.Unit},
			{"phone", d.Phone}, {"contact", d.Contact}, {"nbiot", n.IMEI + n.PlatformID + n.Serial + n.Product + n.Responsible + n.Mobile}} {
			if strings.Contains(f.v, unitSep) {
				p := problem("devices", d.ID, f.field, f.field+": has a control character (0x1F)")
				p.Index, p.Line = i, d.Line
				probs = append(probs, p)
			}
		}
	}
	if len(probs) > 0 {
		return &devices.LoadError{Problems: probs}
	}
	return nil
}

func unpackNBIoT(s string) devices.NBIoT {
	f := strings.SplitN(s, unitSep, 6)
	for len(f) < 6 {
		f = append(f, "")
	}
	return devices.NBIoT{IMEI: f[0], PlatformID: f[1], Serial: f[2], Product: f[3], Responsible: f[4], Mobile: f[5]}
}

// splitGrids and joinGrids keep a station's grid prefixes in one column:
// prefixes are digits, so a comma cannot occur in one.
func splitGrids(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

func joinGrids(g []string) string { return strings.Join(g, ",") }
