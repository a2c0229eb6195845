package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver
)

// migrations are applied in order, each once, recorded in
// schema_migrations. Never edit one that has shipped: append a new one.
//
// The SQL is kept to what SQLite and PostgreSQL share. The exception is the
// id columns: AUTOINCREMENT guarantees that SQLite never reuses an id (not
// even after rows are deleted by a future retention job), because alarm ids
// are part of idempotency keys; on PostgreSQL they become
// BIGINT GENERATED ALWAYS AS IDENTITY. Times are Unix milliseconds.
var migrations = []string{
	`CREATE TABLE alarms (
		id                    INTEGER PRIMARY KEY AUTOINCREMENT,
		device_id             TEXT NOT NULL,
		kind                  TEXT NOT NULL,
		rule_id               TEXT NOT NULL,
		metric                TEXT NOT NULL,
		unit                  TEXT NOT NULL,
		channel               INTEGER NOT NULL,
		severity              TEXT NOT NULL,
		state                 TEXT NOT NULL,
		grid                  TEXT NOT NULL,
		station_id            TEXT NOT NULL,
		value                 DOUBLE PRECISION NOT NULL,
		threshold             DOUBLE PRECISION NOT NULL,
		since_ms              BIGINT NOT NULL,
		device_time_ms        BIGINT NOT NULL,
		seq                   BIGINT NOT NULL,
		raised_at_ms          BIGINT NOT NULL,
		last_seen_at_ms       BIGINT NOT NULL,
		repeats               INTEGER NOT NULL,
		condition_ended_at_ms BIGINT,
		cleared_at_ms         BIGINT,
		clear_value           DOUBLE PRECISION,
		action                TEXT NOT NULL,
		message               TEXT NOT NULL
	);
	-- At most one open alarm per (device, rule, channel), enforced by the
	-- store so that several instances sharing PostgreSQL cannot raise twice.
	CREATE UNIQUE INDEX alarms_open ON alarms (device_id, rule_id, channel) WHERE state = 'raised';
	CREATE INDEX alarms_grid ON alarms (grid);
	CREATE INDEX alarms_raised_at ON alarms (raised_at_ms);
	CREATE TABLE outbox (
		id              INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id        INTEGER NOT NULL REFERENCES alarms (id),
		transition      TEXT NOT NULL,
		target          TEXT NOT NULL,
		station_id      TEXT NOT NULL,
		endpoint        TEXT NOT NULL,
		idempotency_key TEXT NOT NULL,
		body            TEXT NOT NULL,
		created_at_ms   BIGINT NOT NULL,
		attempts        INTEGER NOT NULL,
		last_attempt_ms BIGINT,
		last_error      TEXT,
		delivered_at_ms BIGINT,
		UNIQUE (idempotency_key, target)
	);
	CREATE INDEX outbox_pending ON outbox (endpoint, id) WHERE delivered_at_ms IS NULL;
	CREATE INDEX outbox_alarm ON outbox (alarm_id);`,
}

// store is the SQLite alarm store: one writer connection (SQLite has one
// writer at a time anyway; a single connection avoids SQLITE_BUSY between
// our own writers) and a small pool of readers, which WAL lets run beside
// the writer.
type store struct {
	w *sql.DB
	r *sql.DB
}

func openStore(path string) (*store, error) {
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
	s := &store{w: w}
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
	s.r = r
	return s, nil
}

func (s *store) close() error {
	return errors.Join(s.r.Close(), s.w.Close())
}

func (s *store) migrate() error {
	ctx := context.Background()
	if _, err := s.w.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version       INTEGER PRIMARY KEY,
		applied_at_ms BIGINT NOT NULL
	)`); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var have int
	if err := tx.QueryRowContext(ctx, `SELECT COALESCE(MAX(version), 0) FROM schema_migrations`).Scan(&have); err != nil {
		return fmt.Errorf("migrate: read version: %w", err)
	}
	if have > len(migrations) {
		return fmt.Errorf("migrate: database schema version %d is newer than this firewatch (%d)", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at_ms) VALUES (?, ?)`,
			v, time.Now().UnixMilli()); err != nil {
			return fmt.Errorf("migrate to version %d: %w", v, err)
		}
	}
	return tx.Commit()
}

const alarmColumns = `id, device_id, kind, rule_id, metric, unit, channel, severity, state, grid, station_id,
	value, threshold, since_ms, device_time_ms, raised_at_ms, last_seen_at_ms, repeats,
	condition_ended_at_ms, cleared_at_ms, clear_value, action, message`

type scanner interface{ Scan(dest ...any) error }

func scanAlarm(sc scanner) (Alarm, error) {
	var (
		a                                    Alarm
		id, since, devTime, raised, lastSeen int64
		condEnded, cleared                   sql.NullInt64
		clearValue                           sql.NullFloat64
		state                                string
	)
	err := sc.Scan(&id, &a.Device, &a.Kind, &a.Rule, &a.Metric, &a.Unit, &a.Channel, &a.Severity, &state,
		&a.Grid, &a.Station, &a.Value, &a.Threshold, &since, &devTime, &raised, &lastSeen, &a.Repeats,
		&condEnded, &cleared, &clearValue, &a.Action, &a.Message)
	if err != nil {
		return Alarm{}, err
	}
	a.ID = formatID(id)
	a.State = State(state)
	a.SeverityZH = severityZH(a.Severity)
	a.Since, a.DeviceTime, a.RaisedAt, a.LastSeenAt = msTime(since), msTime(devTime), msTime(raised), msTime(lastSeen)
	if condEnded.Valid {
		t := msTime(condEnded.Int64)
		a.ConditionEndedAt = &t
	}
	if cleared.Valid {
		t := msTime(cleared.Int64)
		a.ClearedAt = &t
	}
	if clearValue.Valid {
		v := clearValue.Float64
		a.ClearValue = &v
	}
	return a, nil
}

// list returns the alarms f selects, newest first.
func (s *store) list(ctx context.Context, f Filter) ([]Alarm, error) {
	var (
		where []string
		args  []any
	)
	if f.State != "" {
		where = append(where, "state = ?")
		args = append(args, string(f.State))
	}
	if f.Severity != 0 {
		where = append(where, "severity = ?")
		args = append(args, f.Severity.String())
	}
	if f.Grid != "" {
		// Codes are digits only (checked by the caller), so LIKE has no
		// wildcard to escape.
		where = append(where, "grid LIKE ?")
		args = append(args, f.Grid+"%")
	}
	if f.Device != "" {
		where = append(where, "device_id = ?")
		args = append(args, f.Device)
	}
	if !f.Since.IsZero() {
		where = append(where, "raised_at_ms >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Until.IsZero() {
		where = append(where, "raised_at_ms < ?")
		args = append(args, f.Until.UnixMilli())
	}
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultLimit
	}
	limit = min(limit, MaxLimit)
	q := "SELECT " + alarmColumns + " FROM alarms"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id DESC LIMIT ?"
	args = append(args, limit)
	rows, err := s.r.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	defer rows.Close()
	out := []Alarm{}
	for rows.Next() {
		a, err := scanAlarm(rows)
		if err != nil {
			return nil, fmt.Errorf("list alarms: %w", err)
		}
		out = append(out, a)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list alarms: %w", err)
	}
	return out, nil
}

// errNotFound is returned by get for an unknown alarm.
var errNotFound = errors.New("alarm not found")

// get returns one alarm with the state of its pushes.
func (s *store) get(ctx context.Context, id int64) (Alarm, error) {
	a, err := scanAlarm(s.r.QueryRowContext(ctx, "SELECT "+alarmColumns+" FROM alarms WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), errNotFound)
	}
	if err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT transition, target, attempts, created_at_ms, delivered_at_ms, last_error
		FROM outbox WHERE alarm_id = ? ORDER BY id`, id)
	if err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s pushes: %w", a.ID, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			p         PushStatus
			created   int64
			delivered sql.NullInt64
			lastErr   sql.NullString
		)
		if err := rows.Scan(&p.Transition, &p.Target, &p.Attempts, &created, &delivered, &lastErr); err != nil {
			return Alarm{}, fmt.Errorf("get alarm %s pushes: %w", a.ID, err)
		}
		p.CreatedAt = msTime(created)
		if delivered.Valid {
			t := msTime(delivered.Int64)
			p.DeliveredAt = &t
		}
		p.LastError = lastErr.String
		a.Pushes = append(a.Pushes, p)
	}
	if err := rows.Err(); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s pushes: %w", a.ID, err)
	}
	return a, nil
}

// outboxRow is one push waiting for delivery.
type outboxRow struct {
	id       int64
	alarmID  int64
	key      string
	target   string
	body     []byte
	attempts int
}

// nextPending returns the oldest undelivered push for endpoint, or nil.
func (s *store) nextPending(ctx context.Context, endpoint string) (*outboxRow, error) {
	var r outboxRow
	var body string
	err := s.r.QueryRowContext(ctx, `SELECT id, alarm_id, idempotency_key, target, body, attempts FROM outbox
		WHERE endpoint = ? AND delivered_at_ms IS NULL ORDER BY id LIMIT 1`, endpoint).
		Scan(&r.id, &r.alarmID, &r.key, &r.target, &body, &r.attempts)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", err)
	}
	r.body = []byte(body)
	return &r, nil
}

// pendingEndpoints lists the endpoints with undelivered pushes, and how many
// pushes are pending in all.
func (s *store) pendingEndpoints(ctx context.Context) ([]string, int, error) {
	rows, err := s.r.QueryContext(ctx, `SELECT endpoint, COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL GROUP BY endpoint`)
	if err != nil {
		return nil, 0, fmt.Errorf("read outbox: %w", err)
	}
	defer rows.Close()
	var (
		eps   []string
		total int
	)
	for rows.Next() {
		var ep string
		var n int
		if err := rows.Scan(&ep, &n); err != nil {
			return nil, 0, fmt.Errorf("read outbox: %w", err)
		}
		eps = append(eps, ep)
		total += n
	}
	return eps, total, rows.Err()
}

// repoint sends pending pushes to the endpoints the configuration names
// now, so that an operator who fixes a wrong webhook URL in the ledger and
// restarts gets the waiting pushes delivered. Pushes of stations no longer
// in the ledger keep their endpoint.
func (s *store) repoint(ctx context.Context, stationEndpoint func(id string) string, brigade string) (int64, error) {
	rows, err := s.w.QueryContext(ctx, `SELECT DISTINCT station_id, endpoint FROM outbox
		WHERE delivered_at_ms IS NULL AND target = 'station'`)
	if err != nil {
		return 0, fmt.Errorf("repoint outbox: %w", err)
	}
	type change struct{ station, from, to string }
	var changes []change
	for rows.Next() {
		var c change
		if err := rows.Scan(&c.station, &c.from); err != nil {
			rows.Close()
			return 0, fmt.Errorf("repoint outbox: %w", err)
		}
		if c.to = stationEndpoint(c.station); c.to != "" && c.to != c.from {
			changes = append(changes, c)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, fmt.Errorf("repoint outbox: %w", err)
	}
	var n int64
	for _, c := range changes {
		res, err := s.w.ExecContext(ctx, `UPDATE outbox SET endpoint = ?
			WHERE delivered_at_ms IS NULL AND target = 'station' AND station_id = ? AND endpoint = ?`, c.to, c.station, c.from)
		if err != nil {
			return n, fmt.Errorf("repoint outbox of station %s: %w", c.station, err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	if brigade != "" {
		res, err := s.w.ExecContext(ctx, `UPDATE outbox SET endpoint = ?
			WHERE delivered_at_ms IS NULL AND target = 'brigade' AND endpoint <> ?`, brigade, brigade)
		if err != nil {
			return n, fmt.Errorf("repoint outbox of brigade: %w", err)
		}
		k, _ := res.RowsAffected()
		n += k
	}
	return n, nil
}

func (s *store) markDelivered(ctx context.Context, id int64, at time.Time) error {
	_, err := s.w.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, delivered_at_ms = ?,
		last_error = NULL WHERE id = ?`, at.UnixMilli(), at.UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("mark push %d delivered: %w", id, err)
	}
	return nil
}

func (s *store) markFailed(ctx context.Context, id int64, at time.Time, reason string) error {
	if len(reason) > 500 {
		reason = strings.ToValidUTF8(reason[:500], "")
	}
	_, err := s.w.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, last_error = ?
		WHERE id = ?`, at.UnixMilli(), reason, id)
	if err != nil {
		return fmt.Errorf("record failed push %d: %w", id, err)
	}
	return nil
}
