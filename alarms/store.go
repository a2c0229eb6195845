package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
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
	// 2: the lifecycle (docs/alarms.md). Openness becomes a column of its
	// own, since many states are open; every transition is kept in
	// alarm_history. Alarms of version 1 get their history rebuilt.
	`ALTER TABLE alarms ADD COLUMN is_open INTEGER NOT NULL DEFAULT 1;
	ALTER TABLE alarms ADD COLUMN closed_at_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN escalations INTEGER NOT NULL DEFAULT 0;
	UPDATE alarms SET is_open = 0, state = 'auto_cleared', closed_at_ms = cleared_at_ms WHERE state = 'cleared';
	DROP INDEX alarms_open;
	CREATE UNIQUE INDEX alarms_open_one ON alarms (device_id, rule_id, channel) WHERE is_open = 1;
	CREATE INDEX alarms_state ON alarms (state);
	CREATE TABLE alarm_history (
		id         INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id   INTEGER NOT NULL REFERENCES alarms (id),
		from_state TEXT NOT NULL,
		to_state   TEXT NOT NULL,
		at_ms      BIGINT NOT NULL,
		actor      TEXT NOT NULL,
		note       TEXT NOT NULL
	);
	CREATE INDEX alarm_history_alarm ON alarm_history (alarm_id, id);
	INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		SELECT id, '', 'raised', raised_at_ms, 'rules', '' FROM alarms;
	INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		SELECT id, 'raised', 'auto_cleared', cleared_at_ms, 'rules', '' FROM alarms WHERE state = 'auto_cleared';`,
	// 3: routing by station readiness.
	`ALTER TABLE alarms ADD COLUMN route_note TEXT NOT NULL DEFAULT '';
	CREATE TABLE station_status (
		station_id TEXT PRIMARY KEY,
		duty       TEXT NOT NULL,
		people     INTEGER NOT NULL,
		note       TEXT NOT NULL,
		at_ms      BIGINT NOT NULL,
		by_actor   TEXT NOT NULL
	);`,
	// 4: storms (incidents) and flapping.
	`ALTER TABLE alarms ADD COLUMN incident_id BIGINT;
	ALTER TABLE alarms ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
	ALTER TABLE outbox ADD COLUMN incident_id BIGINT;
	ALTER TABLE outbox ADD COLUMN incident_upto BIGINT;
	CREATE TABLE incidents (
		id                INTEGER PRIMARY KEY AUTOINCREMENT,
		station_id        TEXT NOT NULL,
		leader_id         BIGINT NOT NULL,
		opened_at_ms      BIGINT NOT NULL,
		last_member_at_ms BIGINT NOT NULL,
		members           INTEGER NOT NULL,
		members_pushed    INTEGER NOT NULL,
		pushes            INTEGER NOT NULL,
		pushed_at_ms      BIGINT,
		is_open           INTEGER NOT NULL
	);
	CREATE INDEX incidents_open ON incidents (station_id) WHERE is_open = 1;
	CREATE INDEX alarms_incident ON alarms (incident_id);
	CREATE INDEX alarms_station_raised ON alarms (station_id, raised_at_ms);
	CREATE INDEX alarms_flap ON alarms (device_id, rule_id, channel, raised_at_ms);`,
	// 5: linkage commands (联动).
	`CREATE TABLE commands (
		id            INTEGER PRIMARY KEY AUTOINCREMENT,
		alarm_id      INTEGER NOT NULL REFERENCES alarms (id),
		device_id     TEXT NOT NULL,
		cmd           TEXT NOT NULL,
		channel       INTEGER NOT NULL,
		cmd_key       TEXT NOT NULL UNIQUE,
		state         TEXT NOT NULL,
		attempts      INTEGER NOT NULL,
		created_at_ms BIGINT NOT NULL,
		last_sent_ms  BIGINT,
		done_at_ms    BIGINT,
		last_error    TEXT
	);
	CREATE INDEX commands_pending ON commands (state);
	CREATE INDEX commands_alarm ON commands (alarm_id);`,
	// 6: scheduled digests (预警提示) sent, so that a restart does not
	// send one twice.
	`CREATE TABLE digests_sent (
		period     TEXT NOT NULL,
		target     TEXT NOT NULL,
		grid       TEXT NOT NULL,
		sent_at_ms BIGINT NOT NULL,
		PRIMARY KEY (period, target)
	);`,
	// 7: the alarm path review (issue 20). escalated_at_ms: escalations
	// are spaced from the previous one, not counted from the raise.
	// condition_ended_seen_ms: firewatch's time of a condition's end, from
	// which a flapping alarm's stable period counts. incident_push: the
	// incident push that first listed an alarm, so that its delivery moves
	// exactly the alarms it listed. parked_at_ms: a push its receiver
	// refused for good, set aside so that later pushes go on.
	`ALTER TABLE alarms ADD COLUMN escalated_at_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN condition_ended_seen_ms BIGINT;
	ALTER TABLE alarms ADD COLUMN incident_push INTEGER;
	UPDATE alarms SET incident_push = 1 WHERE incident_id IS NOT NULL;
	ALTER TABLE outbox ADD COLUMN parked_at_ms BIGINT;
	DROP INDEX outbox_pending;
	CREATE INDEX outbox_pending ON outbox (endpoint, id) WHERE delivered_at_ms IS NULL AND parked_at_ms IS NULL;`,
}

// store is the SQLite alarm store: one writer connection (SQLite has one
// writer at a time anyway; a single connection avoids SQLITE_BUSY between
// our own writers) and a small pool of readers, which WAL lets run beside
// the writer.
type store struct {
	w  *sql.DB
	r  *sql.DB
	pg bool // PostgreSQL: w and r are one pool
}

// openStore opens the SQLite file at path, or the PostgreSQL database when
// path is a postgres:// URL.
func openStore(path string) (*store, error) {
	if isPostgres(path) {
		db, err := openPostgres(path)
		if err != nil {
			return nil, fmt.Errorf("open alarm store: %w", err)
		}
		s := &store{w: db, r: db, pg: true}
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
	if s.pg {
		return s.w.Close()
	}
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
		return fmt.Errorf("migrate: database schema version %d is newer than this firewatch (%d): a newer release wrote it; "+
			"run that release again, or restore the backup taken before the upgrade (docs/install.md); the store is left unchanged", have, len(migrations))
	}
	for v := have + 1; v <= len(migrations); v++ {
		stmts := []string{migrations[v-1]}
		if s.pg {
			stmts = pgMigration(migrations[v-1])
		}
		for _, q := range stmts {
			if _, err := tx.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("migrate to version %d: %w", v, err)
			}
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
	condition_ended_at_ms, cleared_at_ms, clear_value, action, message, is_open, closed_at_ms, escalations, route_note, incident_id, flapping`

type scanner interface{ Scan(dest ...any) error }

func scanAlarm(sc scanner) (Alarm, error) {
	var (
		a                                    Alarm
		id, since, devTime, raised, lastSeen int64
		condEnded, cleared, closed           sql.NullInt64
		clearValue                           sql.NullFloat64
		state                                string
		open, flapping                       int
		incident                             sql.NullInt64
	)
	err := sc.Scan(&id, &a.Device, &a.Kind, &a.Rule, &a.Metric, &a.Unit, &a.Channel, &a.Severity, &state,
		&a.Grid, &a.Station, &a.Value, &a.Threshold, &since, &devTime, &raised, &lastSeen, &a.Repeats,
		&condEnded, &cleared, &clearValue, &a.Action, &a.Message, &open, &closed, &a.Escalations, &a.RouteNote, &incident, &flapping)
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
	a.Open = open == 1
	a.Flapping = flapping == 1
	if incident.Valid {
		a.Incident = formatIncidentID(incident.Int64)
	}
	if closed.Valid {
		t := msTime(closed.Int64)
		a.ClosedAt = &t
	}
	return a, nil
}

// list returns the alarms f selects, newest first.
func (s *store) list(ctx context.Context, f Filter) ([]Alarm, error) {
	var (
		where []string
		args  []any
	)
	switch f.State {
	case "":
	case FilterOpen:
		where = append(where, "is_open = 1")
	case FilterClosed:
		where = append(where, "is_open = 0")
	default:
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
	if f.all {
		limit = statsLimit
	}
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

// ErrNotFound is returned (wrapped) for an unknown alarm.
var ErrNotFound = errors.New("alarm not found")

// get returns one alarm with the state of its pushes.
func (s *store) get(ctx context.Context, id int64) (Alarm, error) {
	a, err := scanAlarm(s.r.QueryRowContext(ctx, "SELECT "+alarmColumns+" FROM alarms WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), ErrNotFound)
	}
	if err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), err)
	}
	rows, err := s.r.QueryContext(ctx, `SELECT transition, target, attempts, created_at_ms, delivered_at_ms, last_error,
		parked_at_ms FROM outbox WHERE alarm_id = ? ORDER BY id`, id)
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
			parked    sql.NullInt64
		)
		if err := rows.Scan(&p.Transition, &p.Target, &p.Attempts, &created, &delivered, &lastErr, &parked); err != nil {
			return Alarm{}, fmt.Errorf("get alarm %s pushes: %w", a.ID, err)
		}
		p.CreatedAt = msTime(created)
		if delivered.Valid {
			t := msTime(delivered.Int64)
			p.DeliveredAt = &t
		}
		if parked.Valid {
			t := msTime(parked.Int64)
			p.ParkedAt = &t
		}
		p.LastError = lastErr.String
		a.Pushes = append(a.Pushes, p)
	}
	if err := rows.Err(); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s pushes: %w", a.ID, err)
	}
	if a.History, err = history(ctx, s.r, id); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s history: %w", a.ID, err)
	}
	if a.Commands, err = s.commands(ctx, id); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s commands: %w", a.ID, err)
	}
	a.Response = response(&a)
	return a, nil
}

type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func history(ctx context.Context, q querier, id int64) ([]Change, error) {
	rows, err := q.QueryContext(ctx, `SELECT from_state, to_state, at_ms, actor, note FROM alarm_history
		WHERE alarm_id = ? ORDER BY id`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var (
			c        Change
			from, to string
			at       int64
		)
		if err := rows.Scan(&from, &to, &at, &c.Actor, &c.Note); err != nil {
			return nil, err
		}
		c.From, c.To, c.At = State(from), State(to), msTime(at)
		out = append(out, c)
	}
	return out, rows.Err()
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// record appends one entry to an alarm's history.
func record(ctx context.Context, x execer, id int64, from, to State, at time.Time, actor, note string) error {
	_, err := x.ExecContext(ctx, `INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		VALUES (?, ?, ?, ?, ?, ?)`, id, string(from), string(to), at.UnixMilli(), actor, note)
	if err != nil {
		return fmt.Errorf("record %s → %s of alarm %s: %w", from, to, formatID(id), err)
	}
	return nil
}

// move changes the state of alarm id from one state to the other within
// tx, if the alarm is still in from (compare and set: another writer may
// have moved it), and records the change. It does not check the lifecycle;
// callers do, with CheckTransition.
func move(ctx context.Context, tx *sql.Tx, id int64, from, to State, at time.Time, actor, note string) error {
	open := 0
	var closed any = at.UnixMilli()
	if to.Open() {
		open, closed = 1, nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE alarms SET state = ?, is_open = ?, closed_at_ms = ? WHERE id = ? AND state = ?`,
		string(to), open, closed, id, string(from))
	if err != nil {
		return fmt.Errorf("move alarm %s to %s: %w", formatID(id), to, err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return fmt.Errorf("move alarm %s %s → %s: %w", formatID(id), from, to, ErrConflict)
	}
	return record(ctx, tx, id, from, to, at, actor, note)
}

// outboxRow is one push waiting for delivery.
type outboxRow struct {
	incident   sql.NullInt64 // incident pushes: the incident, and its last alarm included
	upto       sql.NullInt64
	id         int64
	alarmID    int64
	key        string
	target     string
	transition string
	body       []byte
	attempts   int
}

// nextPending returns the oldest undelivered push for endpoint, or nil.
func (s *store) nextPending(ctx context.Context, endpoint string) (*outboxRow, error) {
	var r outboxRow
	var body string
	err := s.r.QueryRowContext(ctx, `SELECT id, alarm_id, idempotency_key, target, transition, body, attempts,
		incident_id, incident_upto FROM outbox WHERE endpoint = ? AND delivered_at_ms IS NULL AND parked_at_ms IS NULL
		ORDER BY id LIMIT 1`, endpoint).
		Scan(&r.id, &r.alarmID, &r.key, &r.target, &r.transition, &body, &r.attempts, &r.incident, &r.upto)
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
	rows, err := s.r.QueryContext(ctx, `SELECT endpoint, COUNT(*) FROM outbox WHERE delivered_at_ms IS NULL AND parked_at_ms IS NULL
		GROUP BY endpoint`)
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

// markDelivered records a delivery. The first delivery of a raised push to
// the station moves the alarm from raised to pushed, in the same
// transaction (the brigade getting a fire does not mean the station did).
func (s *store) markDelivered(ctx context.Context, row *outboxRow, at time.Time) (pushed bool, err error) {
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, delivered_at_ms = ?,
		last_error = NULL WHERE id = ?`, at.UnixMilli(), at.UnixMilli(), row.id); err != nil {
		return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
	}
	if row.transition == TransitionRaised && row.target == "station" {
		var state string
		if err := tx.QueryRowContext(ctx, `SELECT state FROM alarms WHERE id = ?`, row.alarmID).Scan(&state); err != nil {
			return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
		}
		if State(state) == StateRaised {
			if err := move(ctx, tx, row.alarmID, StateRaised, StatePushed, at, ActorDispatch, "station webhook answered 2xx"); err != nil {
				return false, err
			}
			pushed = true
		}
	}
	if row.transition == TransitionIncident && row.target == "station" && row.incident.Valid {
		// Every alarm the incident push listed has now reached the station:
		// those first listed by this push or an earlier one of the incident
		// (not "id <= upto": on PostgreSQL a lower id may commit later and
		// join after this push was built).
		n := incidentUpdate(row.key)
		if _, err := tx.ExecContext(ctx, `INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
			SELECT id, 'raised', 'pushed', CAST(? AS BIGINT), CAST(? AS TEXT), CAST(? AS TEXT) FROM alarms
			WHERE incident_id = ? AND incident_push <= ? AND state = 'raised'`,
			at.UnixMilli(), ActorDispatch, "incident push "+row.key+" answered 2xx", row.incident.Int64, n); err != nil {
			return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE alarms SET state = 'pushed' WHERE incident_id = ? AND incident_push <= ? AND state = 'raised'`,
			row.incident.Int64, n); err != nil {
			return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
	}
	return pushed, nil
}

func (s *store) markFailed(ctx context.Context, id int64, at time.Time, reason string) error {
	reason = storableText(reason, 500)
	_, err := s.w.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, last_error = ?
		WHERE id = ?`, at.UnixMilli(), reason, id)
	if err != nil {
		return fmt.Errorf("record failed push %d: %w", id, err)
	}
	return nil
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

// incidentUpdate is n of an incident push's key "inc-000001-<n>".
func incidentUpdate(key string) int64 {
	i := strings.LastIndexByte(key, '-')
	n, err := strconv.ParseInt(key[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}
