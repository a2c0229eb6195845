package registry

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/devices"
)

// CommitOptions are the options of one Commit.
type CommitOptions struct {
	// DryRun validates only (every problem, and the ETags of IfMatch) and
	// writes nothing.
	DryRun bool
	// IfMatch maps "device/<id>", "gateway/<id>", "station/<id>" or
	// "place/<code>" to the ETag the caller read; a mismatch fails the
	// whole commit with a *ConflictError. "*" matches any existing entity.
	IfMatch map[string]string
	// Absent lists keys ("device/<id>", …) that must not exist: a create
	// that finds one fails with a *ConflictError (Have set).
	Absent []string
	// Source says where the change came from, kept in the audit: "api",
	// "xlsx import", "csv import", "ledger file <path>".
	Source string
}

// ConflictError is a failed If-Match: the entity changed (or went) since
// the caller read it.
type ConflictError struct {
	Key        string // "device/<id>"
	Want, Have string // ETags; Have is "" for an entity that does not exist
}

func (e *ConflictError) Error() string {
	if e.Want == "(none)" {
		return fmt.Sprintf("%s: it exists already", e.Key)
	}
	if e.Have == "" {
		return fmt.Sprintf("%s: it does not exist (If-Match %s)", e.Key, e.Want)
	}
	return fmt.Sprintf("%s: changed since it was read: ETag is %s, not %s", e.Key, e.Have, e.Want)
}

// ErrNotAttached is returned by Commit before Attach.
var ErrNotAttached = errors.New("registry: the store has no live registry attached")

// ETag is the entity tag of a row written at registry version rev.
func ETag(rev int64) string { return `"` + strconv.FormatInt(rev, 10) + `"` }

// Commit applies c: it validates the registry c makes of the live one
// (every problem, as a *devices.LoadError whose problems name section, id
// and field), checks opt.IfMatch, writes the rows and their audit records
// in one transaction, then makes the change live everywhere (devices.Live)
// and returns the new snapshot and what changed. A failed write changes
// nothing live.
func (s *Store) Commit(ctx context.Context, actor string, c *devices.Change, opt CommitOptions) (*devices.Ledger, *devices.Diff, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.live == nil {
		return nil, nil, ErrNotAttached
	}
	for attempt := 1; ; attempt++ {
		// Issue 15: first what other instances sharing the store committed
		// (follow.go), so that the change is validated against the registry
		// it is written on top of.
		if err := s.syncLocked(ctx); err != nil {
			return nil, nil, fmt.Errorf("registry: the changes other instances committed could not be read: %w", err)
		}
		// Preconditions first (RFC 9110 13.2.2): a stale or missing entity is
		// a 412 (or 404) before the change's own problems are looked at. The
		// transaction checks them again.
		if err := s.checkIfMatch(ctx, s.db, opt); err != nil {
			return nil, nil, err
		}
		next, diff, err := s.live.Load().Apply(c)
		if err != nil {
			return nil, nil, err
		}
		if err := storable(c.UpsertDevices); err != nil {
			return nil, nil, err
		}
		if s.check != nil {
			// What the ledger's validation cannot see: rule overrides against
			// the rules in force, secret hashes (SetCheck).
			if err := s.check(next, diff); err != nil {
				return nil, nil, err
			}
		}
		if opt.DryRun {
			return next, diff, nil
		}
		v, err := s.write(ctx, actor, c, opt, s.applied)
		if errors.Is(err, errStale) && attempt < commitAttempts {
			// Another instance committed since the sync: validate again on
			// top of it, after a short random pause (two instances that
			// keep committing at once would otherwise keep colliding).
			select {
			case <-ctx.Done():
				return nil, nil, ctx.Err()
			case <-time.After(time.Duration(rand.Int64N(int64(attempt) * int64(10*time.Millisecond)))):
			}
			continue
		}
		if err != nil {
			return nil, nil, err
		}
		l, d, err := s.live.Apply(c)
		if err != nil {
			// Only if the live registry was changed by something else than
			// this store since the validation above: the store has the change,
			// the follower reloads the registry (s.applied stays behind).
			return nil, nil, fmt.Errorf("registry: the change is stored but could not be made live (the follower reloads the registry): %w", err)
		}
		s.applied = v
		s.follow.version.Set(float64(v))
		return l, d, nil
	}
}

// commitAttempts bounds how often Commit validates again after another
// instance committed between its validation and its write.
const commitAttempts = 10

// errStale is a write on top of a registry version other than the one the
// change was validated against: another instance committed meanwhile.
var errStale = errors.New("the registry changed meanwhile (another instance): try again")

// write stores c and its audit records in one transaction, on top of
// registry version base (else errStale), and returns the new version.
func (s *Store) write(ctx context.Context, actor string, c *devices.Change, opt CommitOptions, base uint64) (uint64, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("registry commit: %w", err)
	}
	defer tx.Rollback()
	w, err := s.begin(ctx, tx, actor, opt.Source)
	if err != nil {
		return 0, err
	}
	if uint64(w.version-1) != base {
		// On PostgreSQL begin's compare-and-set holds the version row until
		// the transaction ends, so no other instance commits between this
		// check and the commit below.
		return 0, fmt.Errorf("registry version %d, validated against %d: %w", w.version-1, base, errStale)
	}
	if err := s.checkIfMatch(ctx, tx, opt); err != nil {
		return 0, err
	}
	if err := w.change(c); err != nil {
		return 0, fmt.Errorf("registry commit: %w", err)
	}
	if err := w.commit(); err != nil {
		return 0, fmt.Errorf("registry commit: %w", err)
	}
	return uint64(w.version), nil
}

func (s *Store) checkIfMatch(ctx context.Context, db querier, opt CommitOptions) error {
	keys := make([]string, 0, len(opt.IfMatch))
	for k := range opt.IfMatch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		want := opt.IfMatch[k]
		have, err := s.etag(ctx, db, k)
		if err != nil {
			return err
		}
		if have == "" || (want != "*" && strings.TrimPrefix(want, "W/") != have) {
			return &ConflictError{Key: k, Want: want, Have: have}
		}
	}
	for _, k := range opt.Absent {
		have, err := s.etag(ctx, db, k)
		if err != nil {
			return err
		}
		if have != "" {
			return &ConflictError{Key: k, Want: "(none)", Have: have}
		}
	}
	return nil
}

// etag returns the ETag of the entity key ("device/<id>"), "" when absent.
func (s *Store) etag(ctx context.Context, db querier, key string) (string, error) {
	entity, id, _ := strings.Cut(key, "/")
	t, ok := tables[entity]
	if !ok {
		return "", fmt.Errorf("if-match %q: unknown entity %q", key, entity)
	}
	var rev int64
	err := db.QueryRowContext(ctx, s.q(`SELECT rev FROM `+t.name+` WHERE `+t.key+` = ?`), id).Scan(&rev)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("if-match %s: %w", key, err)
	}
	return ETag(rev), nil
}

// table names an entity's table and key column.
type table struct{ name, key string }

var tables = map[string]table{
	"device":  {"registry_devices", "id"},
	"gateway": {"registry_gateways", "id"},
	"station": {"registry_stations", "id"},
	"place":   {"registry_places", "code"},
}

// writer is one registry write transaction at one new version.
type writer struct {
	s       *Store
	ctx     context.Context
	tx      *sql.Tx
	version int64
	actor   string
	source  string
	at      int64
	// Rows waiting for a multi-row INSERT (batch): audit records and new
	// devices. flush writes them; commit flushes first.
	audit, newDevices batch
}

// batch gathers the rows of one table for INSERTs of up to batchRows rows
// each: a spreadsheet import writes a million devices and as many audit
// records, and one statement per row costs more than the row.
type batch struct {
	head, row string // "INSERT INTO t (a, b) VALUES ", "(?, ?)"
	args      []any
	n         int
	full      *sql.Stmt // the statement of a full batch, prepared once
}

const batchRows = 100

func newBatch(head string, cols int) batch {
	return batch{head: head, row: "(?" + strings.Repeat(", ?", cols-1) + ")"}
}

func (w *writer) add(b *batch, args ...any) error {
	b.args = append(b.args, args...)
	b.n++
	if b.n < batchRows {
		return nil
	}
	return w.flushBatch(b)
}

func (w *writer) flushBatch(b *batch) error {
	if b.n == 0 {
		return nil
	}
	q := w.s.q(b.head + b.row + strings.Repeat(", "+b.row, b.n-1))
	var err error
	switch {
	case b.n < batchRows:
		_, err = w.tx.ExecContext(w.ctx, q, b.args...)
	case b.full == nil:
		if b.full, err = w.tx.PrepareContext(w.ctx, q); err != nil {
			return err
		}
		fallthrough
	default:
		_, err = b.full.ExecContext(w.ctx, b.args...)
	}
	clear(b.args)
	b.args, b.n = b.args[:0], 0
	return err
}

// commit writes what is batched and commits the transaction.
func (w *writer) commit() error {
	if err := w.flushBatch(&w.newDevices); err != nil {
		return err
	}
	if err := w.flushBatch(&w.audit); err != nil {
		return err
	}
	if w.s.pg {
		// The followers hear of the version at the commit (notify.go).
		if _, err := w.tx.ExecContext(w.ctx, `SELECT pg_notify($1, $2)`, notifyChannel, strconv.FormatInt(w.version, 10)); err != nil {
			return fmt.Errorf("registry version %d: notify: %w", w.version, err)
		}
	}
	return w.tx.Commit()
}

// begin bumps the registry version inside tx. On PostgreSQL the update
// locks the version row, so that writers of several instances take turns.
func (s *Store) begin(ctx context.Context, tx *sql.Tx, actor, source string) (*writer, error) {
	v, err := metaVersion(ctx, tx, s)
	if err != nil {
		return nil, err
	}
	w := &writer{s: s, ctx: ctx, tx: tx, version: int64(v) + 1, actor: actor, source: source, at: s.now().UnixMilli()}
	if v == 0 {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO registry_meta (key, value) VALUES (?, ?)`), "version", "1")
	} else {
		var res sql.Result
		res, err = tx.ExecContext(ctx, s.q(`UPDATE registry_meta SET value = ? WHERE key = ? AND value = ?`),
			strconv.FormatInt(w.version, 10), "version", strconv.FormatUint(v, 10))
		if err == nil {
			if n, _ := res.RowsAffected(); n != 1 {
				err = errStale
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("registry version: %w", err)
	}
	w.audit = newBatch(`INSERT INTO registry_audit (at_ms, actor, source, version, entity, entity_id, action, before, after) VALUES `, 9)
	w.newDevices = newBatch(`INSERT INTO registry_devices (`+strings.Join(deviceWrite, ", ")+`, rev, seq, id) VALUES `, len(deviceWrite)+3)
	return w, nil
}

// record adds an audit record; before and after are nil for an entity that
// did not exist or no longer does.
func (w *writer) record(entity, id, action string, before, after any) error {
	enc := func(v any) (string, error) {
		if v == nil {
			return "", nil
		}
		b, err := json.Marshal(v)
		return string(b), err
	}
	b, err := enc(before)
	if err != nil {
		return err
	}
	a, err := enc(after)
	if err != nil {
		return err
	}
	return w.add(&w.audit, w.at, w.actor, w.source, w.version, entity, id, action, b, a)
}

func (w *writer) nextSeq(table string) (int64, error) {
	var seq int64
	err := w.tx.QueryRowContext(w.ctx, `SELECT COALESCE(MAX(seq), 0) FROM `+table).Scan(&seq)
	return seq + 1, err
}

// change writes c: places, stations, gateways, devices, deletions last in
// the reverse order (devices before the stations they name).
func (w *writer) change(c *devices.Change) error {
	codes := make([]string, 0, len(c.Places))
	for code := range c.Places {
		codes = append(codes, code)
	}
	slices.Sort(codes)
	for _, code := range codes {
		if err := w.place(code, c.Places[code]); err != nil {
			return fmt.Errorf("place %s: %w", code, err)
		}
	}
	for i := range c.UpsertStations {
		if err := w.station(&c.UpsertStations[i]); err != nil {
			return fmt.Errorf("station %s: %w", c.UpsertStations[i].ID, err)
		}
	}
	for i := range c.UpsertGateways {
		if err := w.gateway(&c.UpsertGateways[i]); err != nil {
			return fmt.Errorf("gateway %s: %w", c.UpsertGateways[i].ID, err)
		}
	}
	if err := w.devices(c.UpsertDevices); err != nil {
		return err
	}
	for _, id := range c.DeleteDevices {
		if err := w.deleteDevice(id); err != nil {
			return fmt.Errorf("device %s: %w", id, err)
		}
	}
	for _, id := range c.DeleteGateways {
		if err := w.deleteGateway(id); err != nil {
			return fmt.Errorf("gateway %s: %w", id, err)
		}
	}
	for _, id := range c.DeleteStations {
		if err := w.deleteStation(id); err != nil {
			return fmt.Errorf("station %s: %w", id, err)
		}
	}
	return nil
}

func (w *writer) place(code, name string) error {
	s := w.s
	var before string
	err := w.tx.QueryRowContext(w.ctx, s.q(`SELECT name FROM registry_places WHERE code = ?`), code).Scan(&before)
	exists := err == nil
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return err
	}
	var bv any
	if exists {
		bv = Place{Code: code, Name: before}
	}
	switch {
	case name == "" && !exists:
		return nil
	case name == "":
		if _, err := w.tx.ExecContext(w.ctx, s.q(`DELETE FROM registry_places WHERE code = ?`), code); err != nil {
			return err
		}
		return w.record("place", code, "delete", bv, nil)
	case name == before:
		return nil
	case exists:
		if _, err := w.tx.ExecContext(w.ctx, s.q(`UPDATE registry_places SET name = ?, rev = ? WHERE code = ?`), name, w.version, code); err != nil {
			return err
		}
		return w.record("place", code, "update", bv, Place{Code: code, Name: name})
	default:
		if _, err := w.tx.ExecContext(w.ctx, s.q(`INSERT INTO registry_places (code, name, rev) VALUES (?, ?, ?)`), code, name, w.version); err != nil {
			return err
		}
		return w.record("place", code, "create", nil, Place{Code: code, Name: name})
	}
}

func (w *writer) station(st *devices.StationEntry) error {
	s := w.s
	var b devices.StationEntry
	var grids string
	err := w.tx.QueryRowContext(w.ctx, s.q(`SELECT id, name, grids, endpoint, lat, lon FROM registry_stations WHERE id = ?`), st.ID).
		Scan(&b.ID, &b.Name, &grids, &b.Endpoint, &b.Lat, &b.Lon)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		seq, err := w.nextSeq("registry_stations")
		if err != nil {
			return err
		}
		if _, err := w.tx.ExecContext(w.ctx, s.q(`INSERT INTO registry_stations (seq, id, name, grids, endpoint, lat, lon, rev)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?)`), seq, st.ID, st.Name, joinGrids(st.Grids), st.Endpoint, st.Lat, st.Lon, w.version); err != nil {
			return err
		}
		return w.record("station", st.ID, "create", nil, stationJSON(st, w.version))
	case err != nil:
		return err
	}
	b.Grids = splitGrids(grids)
	if same(b, *st) || (len(b.Grids) == 0 && len(st.Grids) == 0 && same(noGrids(b), noGrids(*st))) {
		return nil
	}
	if _, err := w.tx.ExecContext(w.ctx, s.q(`UPDATE registry_stations SET name = ?, grids = ?, endpoint = ?, lat = ?, lon = ?, rev = ?
		WHERE id = ?`), st.Name, joinGrids(st.Grids), st.Endpoint, st.Lat, st.Lon, w.version, st.ID); err != nil {
		return err
	}
	return w.record("station", st.ID, "update", stationJSON(&b, 0), stationJSON(st, w.version))
}

func (w *writer) gateway(g *devices.GatewayEntry) error {
	s := w.s
	var b devices.GatewayEntry
	err := w.tx.QueryRowContext(w.ctx, s.q(`SELECT id, secret_hash FROM registry_gateways WHERE id = ?`), g.ID).Scan(&b.ID, &b.SecretHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		seq, err := w.nextSeq("registry_gateways")
		if err != nil {
			return err
		}
		if _, err := w.tx.ExecContext(w.ctx, s.q(`INSERT INTO registry_gateways (seq, id, secret_hash, rev) VALUES (?, ?, ?, ?)`),
			seq, g.ID, g.SecretHash, w.version); err != nil {
			return err
		}
		return w.record("gateway", g.ID, "create", nil, gatewayJSON(g, w.version))
	case err != nil:
		return err
	}
	if b.SecretHash == g.SecretHash {
		return nil
	}
	if _, err := w.tx.ExecContext(w.ctx, s.q(`UPDATE registry_gateways SET secret_hash = ?, rev = ? WHERE id = ?`), g.SecretHash, w.version, g.ID); err != nil {
		return err
	}
	return w.record("gateway", g.ID, "update", gatewayJSON(&b, 0), gatewayJSON(g, w.version))
}

// devices upserts ds: a spreadsheet import may bring a million. A device
// the live registry does not have is inserted without looking for its row
// first (batched); on a PostgreSQL shared by instances the unique id then
// refuses a row another instance wrote meanwhile, and the commit fails.
func (w *writer) devices(ds []devices.DeviceEntry) error {
	if len(ds) == 0 {
		return nil
	}
	s := w.s
	var live *devices.Ledger
	if s.live != nil {
		live = s.live.Load()
	}
	var sel, upd *sql.Stmt
	seq, err := w.nextSeq("registry_devices")
	if err != nil {
		return err
	}
	for i := range ds {
		d := &ds[i]
		args := deviceArgs(d)
		var b devices.DeviceEntry
		err := sql.ErrNoRows
		if live == nil || isLive(live, d.ID) {
			if sel == nil {
				if sel, err = w.tx.PrepareContext(w.ctx, s.q(`SELECT `+deviceColumns+` FROM registry_devices WHERE id = ?`)); err != nil {
					return err
				}
				defer sel.Close()
			}
			err = scanDevice(sel.QueryRowContext(w.ctx, d.ID), &b, nil)
		}
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if err := w.add(&w.newDevices, append(args, w.version, seq, d.ID)...); err != nil {
				return fmt.Errorf("devices: %w", err)
			}
			seq++
			if err := w.record("device", d.ID, "create", nil, deviceJSON(d, w.version)); err != nil {
				return err
			}
		case err != nil:
			return fmt.Errorf("device %s: %w", d.ID, err)
		case same(b, *d):
			continue // unchanged: no write, no audit record (a spreadsheet imported again)
		default:
			if upd == nil {
				if upd, err = w.tx.PrepareContext(w.ctx, s.q(updateDevice)); err != nil {
					return err
				}
				defer upd.Close()
			}
			if _, err := upd.ExecContext(w.ctx, append(args, w.version, d.ID)...); err != nil {
				return fmt.Errorf("device %s: %w", d.ID, err)
			}
			if err := w.record("device", d.ID, "update", deviceJSON(&b, 0), deviceJSON(d, w.version)); err != nil {
				return err
			}
		}
	}
	// Deletions follow in the same transaction: the new rows must be
	// written before a later statement looks for them.
	return w.flushBatch(&w.newDevices)
}

// noGrids is st without its grids, to compare a nil and an empty list as
// the same.
func noGrids(st devices.StationEntry) devices.StationEntry {
	st.Grids = nil
	return st
}

// isLive reports whether the live registry has device id (not removed).
func isLive(l *devices.Ledger, id string) bool {
	_, ok := l.LookupID(id)
	return ok
}

func (w *writer) deleteDevice(id string) error {
	var b devices.DeviceEntry
	err := scanDevice(w.tx.QueryRowContext(w.ctx, w.s.q(`SELECT `+deviceColumns+` FROM registry_devices WHERE id = ?`), id), &b, nil)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := w.tx.ExecContext(w.ctx, w.s.q(`DELETE FROM registry_devices WHERE id = ?`), id); err != nil {
		return err
	}
	return w.record("device", id, "delete", deviceJSON(&b, 0), nil)
}

func (w *writer) deleteGateway(id string) error {
	var b devices.GatewayEntry
	err := w.tx.QueryRowContext(w.ctx, w.s.q(`SELECT id, secret_hash FROM registry_gateways WHERE id = ?`), id).Scan(&b.ID, &b.SecretHash)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := w.tx.ExecContext(w.ctx, w.s.q(`DELETE FROM registry_gateways WHERE id = ?`), id); err != nil {
		return err
	}
	return w.record("gateway", id, "delete", gatewayJSON(&b, 0), nil)
}

func (w *writer) deleteStation(id string) error {
	var b devices.StationEntry
	var grids string
	err := w.tx.QueryRowContext(w.ctx, w.s.q(`SELECT id, name, grids, endpoint, lat, lon FROM registry_stations WHERE id = ?`), id).
		Scan(&b.ID, &b.Name, &grids, &b.Endpoint, &b.Lat, &b.Lon)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	b.Grids = splitGrids(grids)
	if _, err := w.tx.ExecContext(w.ctx, w.s.q(`DELETE FROM registry_stations WHERE id = ?`), id); err != nil {
		return err
	}
	return w.record("station", id, "delete", stationJSON(&b, 0), nil)
}
