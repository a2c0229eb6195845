package alarms

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

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
	created    int64 // when it was queued, Unix ms
}

// nextPending returns the oldest undelivered push for endpoint, or nil.
func (s *store) nextPending(ctx context.Context, endpoint string) (*outboxRow, error) {
	var r outboxRow
	var body string
	err := s.r.QueryRowContext(ctx, `SELECT id, alarm_id, idempotency_key, target, transition, body, attempts,
		incident_id, incident_upto, created_at_ms FROM outbox WHERE endpoint = ? AND delivered_at_ms IS NULL AND parked_at_ms IS NULL
		ORDER BY id LIMIT 1`, endpoint).
		Scan(&r.id, &r.alarmID, &r.key, &r.target, &r.transition, &body, &r.attempts, &r.incident, &r.upto, &r.created)
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
	type change struct{ station, from, to string }
	rows, err := s.w.QueryContext(ctx, `SELECT DISTINCT station_id, endpoint FROM outbox
		WHERE delivered_at_ms IS NULL AND target = 'station'`)
	pending, err := collect(rows, err, func(sc scanner, c *change) error { return sc.Scan(&c.station, &c.from) })
	if err != nil {
		return 0, fmt.Errorf("repoint outbox: %w", err)
	}
	var n int64
	for _, c := range pending {
		if c.to = stationEndpoint(c.station); c.to == "" || c.to == c.from {
			continue
		}
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
	t, err := s.begin(ctx)
	if err != nil {
		return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
	}
	defer t.rollback()
	tx := t.tx
	if _, err := tx.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, delivered_at_ms = ?,
		last_error = NULL WHERE id = ?`, at.UnixMilli(), at.UnixMilli(), row.id); err != nil {
		return false, fmt.Errorf("mark push %d delivered: %w", row.id, err)
	}
	if row.transition == TransitionRaised && row.target == "station" {
		// Compare and set in one statement: an alarm still raised is now
		// pushed; one that left raised meanwhile (cleared by its rule,
		// taken on by a person) stays as it is. A read of the state before
		// the move left a gap in which another instance's commit made the
		// move fail (PostgreSQL; TestSharedStore/DeliveredWhileCleared).
		err := t.move(ctx, row.alarmID, StateRaised, StatePushed, at, ActorDispatch, "station webhook answered 2xx")
		switch {
		case err == nil:
			pushed = true
		case !errors.Is(err, ErrConflict):
			return false, err
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
	if err := t.commit(); err != nil {
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

// incidentUpdate is n of an incident push's key "inc-000001-<n>".
func incidentUpdate(key string) int64 {
	i := strings.LastIndexByte(key, '-')
	n, err := strconv.ParseInt(key[i+1:], 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// newPush is one outbox row to write: a push (or robot message) for one
// receiver.
type newPush struct {
	alarmID    int64
	transition string
	target     string // "station", "station:<id>", "brigade" or "robot:<kind>:<grid>:<n>"
	station    string
	endpoint   string
	key        string // idempotency key
	body       []byte
	// incident and upto: an incident push's incident and the last alarm it
	// lists; 0 for every other push.
	incident, upto int64
}

// insertPush queues p for delivery.
func (q queries) insertPush(ctx context.Context, p newPush, now time.Time) error {
	_, err := q.db.ExecContext(ctx, `INSERT INTO outbox (alarm_id, transition, target, station_id, endpoint,
		idempotency_key, body, created_at_ms, attempts, incident_id, incident_upto) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?)`,
		p.alarmID, p.transition, p.target, p.station, p.endpoint, p.key, string(p.body), now.UnixMilli(),
		nullable(p.incident), nullable(p.upto))
	return err
}

// raisedPushBody returns the body of the first raised push of alarm id to
// a station or the brigade; found is false when it had none.
func (q queries) raisedPushBody(ctx context.Context, id int64) (body string, found bool, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT body FROM outbox WHERE alarm_id = ? AND transition = ?
		AND target IN ('station', 'brigade') ORDER BY id LIMIT 1`, id, TransitionRaised).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return body, err == nil, err
}

// toldPush is a push that told a station or the brigade of an alarm.
type toldPush struct {
	target, station, endpoint string
	transition, key, body     string
}

// toldPushes lists, oldest first, the raised and escalation pushes of alarm
// id and the pushes of incident inc (-1: none) to stations and the brigade.
func (q queries) toldPushes(ctx context.Context, id, inc int64) ([]toldPush, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT target, station_id, endpoint, transition, idempotency_key, body FROM outbox
		WHERE target IN ('station', 'brigade') AND ((alarm_id = ? AND transition IN (?, ?)) OR (incident_id = ? AND transition = ?))
		ORDER BY id`, id, TransitionRaised, TransitionEscalated, inc, TransitionIncident)
	return collect(rows, err, func(sc scanner, p *toldPush) error {
		return sc.Scan(&p.target, &p.station, &p.endpoint, &p.transition, &p.key, &p.body)
	})
}

// parkPush sets push id aside as refused for good, if it is neither
// delivered nor parked yet.
func (q queries) parkPush(ctx context.Context, id int64, at time.Time, reason string) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE outbox SET attempts = attempts + 1, last_attempt_ms = ?, last_error = ?, parked_at_ms = ?
		WHERE id = ? AND delivered_at_ms IS NULL AND parked_at_ms IS NULL`, at.UnixMilli(), storableText(reason, 500), at.UnixMilli(), id))
}

// pushEndpoint returns the endpoint of push id.
func (q queries) pushEndpoint(ctx context.Context, id int64) (string, error) {
	var ep string
	if err := q.db.QueryRowContext(ctx, `SELECT endpoint FROM outbox WHERE id = ?`, id).Scan(&ep); err != nil {
		return "", fmt.Errorf("read push %d: %w", id, err)
	}
	return ep, nil
}

// oldestPending returns the attempts and creation time (Unix ms) of the
// oldest push waiting for endpoint; found is false when none waits.
func (q queries) oldestPending(ctx context.Context, endpoint string) (attempts int, created int64, found bool, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT attempts, created_at_ms FROM outbox WHERE endpoint = ? AND delivered_at_ms IS NULL
		AND parked_at_ms IS NULL ORDER BY id LIMIT 1`, endpoint).Scan(&attempts, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, 0, false, nil
	}
	return attempts, created, err == nil, err
}
