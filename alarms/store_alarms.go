package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

const alarmColumns = `id, device_id, kind, rule_id, metric, unit, channel, severity, state, grid, station_id,
	value, threshold, since_ms, device_time_ms, raised_at_ms, last_seen_at_ms, repeats,
	condition_ended_at_ms, cleared_at_ms, clear_value, action, message, is_open, closed_at_ms, escalations, route_note, incident_id, flapping`

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

// listIDs returns the ids of the alarms f selects.
func (s *store) listIDs(ctx context.Context, f Filter) ([]int64, error) {
	as, err := s.list(ctx, f)
	if err != nil {
		return nil, fmt.Errorf("statistics: %w", err)
	}
	ids := make([]int64, 0, len(as))
	for _, a := range as {
		id, _ := parseID(a.ID)
		ids = append(ids, id)
	}
	return ids, nil
}

// ErrNotFound is returned (wrapped) for an unknown alarm.
var ErrNotFound = errors.New("alarm not found")

// get returns one alarm with the state of its pushes, its history and its
// commands, all read in one snapshot: a transition committed meanwhile is
// either wholly in it or not at all.
func (s *store) get(ctx context.Context, id int64) (Alarm, error) {
	tx, err := s.r.BeginTx(ctx, s.snapshot())
	if err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), err)
	}
	defer tx.Rollback() // read only
	q := queries{tx}
	a, err := scanAlarm(tx.QueryRowContext(ctx, "SELECT "+alarmColumns+" FROM alarms WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), ErrNotFound)
	}
	if err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s: %w", formatID(id), err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT transition, target, attempts, created_at_ms, delivered_at_ms, last_error,
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
	if a.History, err = q.history(ctx, id); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s history: %w", a.ID, err)
	}
	if a.Commands, err = q.commands(ctx, id); err != nil {
		return Alarm{}, fmt.Errorf("get alarm %s commands: %w", a.ID, err)
	}
	a.Response = response(&a)
	return a, nil
}

// history returns the changes of alarm id, oldest first.
func (q queries) history(ctx context.Context, id int64) ([]Change, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT from_state, to_state, at_ms, actor, note FROM alarm_history
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

// record appends one entry to an alarm's history.
func (q queries) record(ctx context.Context, id int64, from, to State, at time.Time, actor, note string) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO alarm_history (alarm_id, from_state, to_state, at_ms, actor, note)
		VALUES (?, ?, ?, ?, ?, ?)`, id, string(from), string(to), at.UnixMilli(), actor, note)
	if err != nil {
		return fmt.Errorf("record %s → %s of alarm %s: %w", from, to, formatID(id), err)
	}
	return nil
}

// lock takes alarm id's row lock until the transaction ends (PostgreSQL;
// SQLite's write transactions are exclusive already).
func (q queries) lock(ctx context.Context, id int64) error {
	if _, err := q.db.ExecContext(ctx, `UPDATE alarms SET state = state WHERE id = ?`, id); err != nil {
		return fmt.Errorf("lock alarm %s: %w", formatID(id), err)
	}
	return nil
}

// noted reports whether alarm id's history has an entry by actor with
// note.
func (q queries) noted(ctx context.Context, id int64, actor, note string) (bool, error) {
	var one int
	err := q.db.QueryRowContext(ctx, `SELECT 1 FROM alarm_history WHERE alarm_id = ? AND actor = ? AND note = ? LIMIT 1`,
		id, actor, note).Scan(&one)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, sql.ErrNoRows):
		return false, nil
	}
	return false, fmt.Errorf("history of alarm %s: %w", formatID(id), err)
}

// move changes the state of alarm id from one state to the other within
// tx, if the alarm is still in from (compare and set: another writer may
// have moved it), and records the change. It does not check the lifecycle;
// callers do, with CheckTransition.
func (q queries) move(ctx context.Context, id int64, from, to State, at time.Time, actor, note string) error {
	open := 0
	var closed any = at.UnixMilli()
	if to.Open() {
		open, closed = 1, nil
	}
	ok, err := changed(q.db.ExecContext(ctx, `UPDATE alarms SET state = ?, is_open = ?, closed_at_ms = ? WHERE id = ? AND state = ?`,
		string(to), open, closed, id, string(from)))
	if err != nil {
		return fmt.Errorf("move alarm %s to %s: %w", formatID(id), to, err)
	}
	if !ok {
		return fmt.Errorf("move alarm %s %s → %s: %w", formatID(id), from, to, ErrConflict)
	}
	return q.record(ctx, id, from, to, at, actor, note)
}

// alarm reads alarm id; an unknown id is an error wrapping ErrNotFound.
func (q queries) alarm(ctx context.Context, id int64) (Alarm, error) {
	a, err := scanAlarm(q.db.QueryRowContext(ctx, "SELECT "+alarmColumns+" FROM alarms WHERE id = ?", id))
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, fmt.Errorf("alarm %s: %w", formatID(id), ErrNotFound)
	}
	return a, err
}

// alarmState reads the state of alarm id.
func (q queries) alarmState(ctx context.Context, id int64) (State, error) {
	var st string
	err := q.db.QueryRowContext(ctx, `SELECT state FROM alarms WHERE id = ?`, id).Scan(&st)
	return State(st), err
}

// openAlarmID finds the open alarm of (device, rule, channel).
func (q queries) openAlarmID(ctx context.Context, device, rule string, ch uint8) (id int64, found bool, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT id FROM alarms WHERE device_id = ? AND rule_id = ? AND channel = ? AND is_open = 1`,
		device, rule, ch).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// openAlarm reads the open alarm of (device, rule, channel).
func (q queries) openAlarm(ctx context.Context, device, rule string, ch uint8) (a Alarm, found bool, err error) {
	a, err = scanAlarm(q.db.QueryRowContext(ctx, `SELECT `+alarmColumns+` FROM alarms
		WHERE device_id = ? AND rule_id = ? AND channel = ? AND is_open = 1`, device, rule, ch))
	if errors.Is(err, sql.ErrNoRows) {
		return Alarm{}, false, nil
	}
	return a, err == nil, err
}

// repeatOpen counts one more raise of open alarm id and forgets that its
// condition had ended. It reports false when the alarm was closed since it
// was found (is_open again: on PostgreSQL a flapping alarm may have been
// found stable meanwhile).
func (q queries) repeatOpen(ctx context.Context, id int64, now time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE alarms SET repeats = repeats + 1, last_seen_at_ms = ?,
		condition_ended_at_ms = NULL, condition_ended_seen_ms = NULL WHERE id = ? AND is_open = 1`, now.UnixMilli(), id))
}

// insertAlarm stores a new alarm a, raised at now, and returns its id.
// since and deviceTime are Unix milliseconds; seq is the reading's.
func (q queries) insertAlarm(ctx context.Context, a *Alarm, since, deviceTime int64, seq int64, now time.Time) (int64, error) {
	flap := 0
	if a.Flapping {
		flap = 1
	}
	var id int64
	err := q.db.QueryRowContext(ctx, `INSERT INTO alarms (device_id, kind, rule_id, metric, unit, channel, severity, state,
		grid, station_id, value, threshold, since_ms, device_time_ms, seq, raised_at_ms, last_seen_at_ms, repeats,
		action, message, route_note, flapping) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?) RETURNING id`,
		a.Device, a.Kind, a.Rule, a.Metric, a.Unit, a.Channel, a.Severity, string(a.State), a.Grid, a.Station,
		a.Value, a.Threshold, since, deviceTime, seq, now.UnixMilli(), now.UnixMilli(),
		a.Action, a.Message, a.RouteNote, flap).Scan(&id)
	return id, err
}

// endCondition records that the condition of alarm id ended at the
// device's time endedMs, seen by firewatch at now.
func (q queries) endCondition(ctx context.Context, id, endedMs int64, now time.Time) error {
	_, err := q.db.ExecContext(ctx, `UPDATE alarms SET condition_ended_at_ms = ?, condition_ended_seen_ms = ? WHERE id = ?`,
		endedMs, now.UnixMilli(), id)
	return err
}

// setCleared records when alarm id cleared and the value it cleared at.
func (q queries) setCleared(ctx context.Context, id int64, now time.Time, value float64) error {
	_, err := q.db.ExecContext(ctx, `UPDATE alarms SET cleared_at_ms = ?, clear_value = ? WHERE id = ?`,
		now.UnixMilli(), value, id)
	return err
}

// countRaisedSince counts the alarms of (device, rule, channel) raised at
// or after since.
func (q queries) countRaisedSince(ctx context.Context, device, rule string, ch int, since time.Time) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alarms WHERE device_id = ? AND rule_id = ? AND channel = ?
		AND raised_at_ms >= ?`, device, rule, ch, since.UnixMilli()).Scan(&n)
	return n, err
}

// stableFlapping lists the open flapping alarms, other than fires, that
// nobody took on and whose condition ended (as firewatch saw it) at or
// before endedBefore.
func (q queries) stableFlapping(ctx context.Context, endedBefore time.Time) ([]int64, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id FROM alarms WHERE is_open = 1 AND flapping = 1
		AND condition_ended_at_ms IS NOT NULL AND COALESCE(condition_ended_seen_ms, last_seen_at_ms) <= ? AND state IN (?, ?, ?)
		AND severity <> ?`,
		endedBefore.UnixMilli(), string(StateRaised), string(StatePushed), string(StateReceived), rules.SeverityFire.String())
	return collect(rows, err, scanID)
}

// clearIfStable sets cleared_at of alarm id if it is still open with its
// condition ended at or before endedBefore (the conditions of
// stableFlapping again: on PostgreSQL the rule may have raised the alarm
// again since, and an UPDATE re-reads the row it waited for).
func (q queries) clearIfStable(ctx context.Context, id int64, now, endedBefore time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE alarms SET cleared_at_ms = ? WHERE id = ? AND is_open = 1
		AND condition_ended_at_ms IS NOT NULL AND COALESCE(condition_ended_seen_ms, last_seen_at_ms) <= ?`,
		now.UnixMilli(), id, endedBefore.UnixMilli()))
}

// overdueAlarm is an alarm due for escalation and how often it was
// escalated.
type overdueAlarm struct {
	id          int64
	escalations int
}

// overdue lists, oldest first and at most 1000, the open fires and alarms
// that nobody acknowledged, escalated fewer than max times, whose raise or
// last escalation is at least within old at now, and that had a raised
// push.
func (q queries) overdue(ctx context.Context, within time.Duration, max int, now time.Time) ([]overdueAlarm, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id, escalations FROM alarms
		WHERE is_open = 1 AND state IN (?, ?, ?) AND escalations < ? AND COALESCE(escalated_at_ms, raised_at_ms) + ? <= ?
		AND severity IN (?, ?)
		AND EXISTS (SELECT 1 FROM outbox o WHERE o.alarm_id = alarms.id AND o.transition = ?)
		ORDER BY id LIMIT 1000`,
		string(StateRaised), string(StatePushed), string(StateReceived), max, within.Milliseconds(), now.UnixMilli(),
		rules.SeverityFire.String(), rules.SeverityAlarm.String(), TransitionRaised)
	return collect(rows, err, func(sc scanner, d *overdueAlarm) error { return sc.Scan(&d.id, &d.escalations) })
}

// markEscalated records escalation n of alarm id, if it was escalated n-1
// times and is still unanswered (the state again: on PostgreSQL a person
// may have acknowledged the alarm since it was read).
func (q queries) markEscalated(ctx context.Context, id int64, n int, now time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE alarms SET escalations = ?, escalated_at_ms = ? WHERE id = ? AND escalations = ?
		AND state IN (?, ?, ?)`, n, now.UnixMilli(), id, n-1, string(StateRaised), string(StatePushed), string(StateReceived)))
}

// incidentListing returns the incident of alarm id and the number of the
// incident push that first listed it (both NULL when none).
func (q queries) incidentListing(ctx context.Context, id int64) (incident, listedIn sql.NullInt64, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT incident_id, incident_push FROM alarms WHERE id = ?`, id).Scan(&incident, &listedIn)
	return incident, listedIn, err
}
