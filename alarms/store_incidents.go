package alarms

import (
	"context"
	"database/sql"
	"errors"
	"time"

	"github.com/firewatch-iot/firewatch/rules"
)

// The incidents table: storms grouped into one push (storm.go).

// recentSeverities lists the severities of the alarms of station st raised
// at or after since, other than alarm except.
func (q queries) recentSeverities(ctx context.Context, st string, since time.Time, except int64) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT DISTINCT severity FROM alarms WHERE station_id = ? AND raised_at_ms >= ? AND id <> ?`,
		st, since.UnixMilli(), except)
	return collect(rows, err, func(sc scanner, s *string) error { return sc.Scan(s) })
}

// findOpenIncident finds the newest open incident of station st that had a
// member at or after since.
func (q queries) findOpenIncident(ctx context.Context, st string, since time.Time) (id int64, found bool, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT id FROM incidents WHERE station_id = ? AND is_open = 1 AND last_member_at_ms >= ?
		ORDER BY id DESC LIMIT 1`, st, since.UnixMilli()).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, false, nil
	}
	return id, err == nil, err
}

// addMember counts one more member of incident id, if it is still open
// (on PostgreSQL flushIncidents may have closed it since it was found).
func (q queries) addMember(ctx context.Context, id int64, now time.Time) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE incidents SET last_member_at_ms = ?, members = members + 1
		WHERE id = ? AND is_open = 1`, now.UnixMilli(), id))
}

// stormLeader finds the would-be leader of a new incident at station st:
// the newest alarm other than except, raised at or after since, in no
// incident, and not a fire.
func (q queries) stormLeader(ctx context.Context, st string, since time.Time, except int64) (id int64, state State, found bool, err error) {
	var s string
	err = q.db.QueryRowContext(ctx, `SELECT id, state FROM alarms WHERE station_id = ? AND raised_at_ms >= ? AND id <> ?
		AND incident_id IS NULL AND severity <> ? ORDER BY id DESC LIMIT 1`, st, since.UnixMilli(), except, rules.SeverityFire.String()).
		Scan(&id, &s)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, nil
	}
	return id, State(s), err == nil, err
}

// insertIncident opens an incident of two members at station st led by
// alarm leader, and returns its id.
func (q queries) insertIncident(ctx context.Context, st string, leader int64, now time.Time) (int64, error) {
	var id int64
	err := q.db.QueryRowContext(ctx, `INSERT INTO incidents (station_id, leader_id, opened_at_ms, last_member_at_ms,
		members, members_pushed, pushes, is_open) VALUES (?, ?, ?, ?, 2, 0, 0, 1) RETURNING id`,
		st, leader, now.UnixMilli(), now.UnixMilli()).Scan(&id)
	return id, err
}

// makeLeader puts alarm leader in incident inc as its first member
// (already pushed on its own), if it is in no incident yet (another
// instance on the same PostgreSQL may have made it the leader of its own).
func (q queries) makeLeader(ctx context.Context, inc, leader int64) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE alarms SET incident_id = ?, incident_push = 0 WHERE id = ? AND incident_id IS NULL`,
		inc, leader))
}

// setIncident puts alarm id in incident inc.
func (q queries) setIncident(ctx context.Context, id, inc int64) error {
	_, err := q.db.ExecContext(ctx, `UPDATE alarms SET incident_id = ? WHERE id = ?`, inc, id)
	return err
}

// incidentsDue lists the open incidents with members not yet pushed whose
// last member is at least hold old, or whose last push (or opening) is at
// least most old, at now.
func (q queries) incidentsDue(ctx context.Context, hold, most time.Duration, now time.Time) ([]int64, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT id FROM incidents WHERE is_open = 1 AND members > members_pushed
		AND (last_member_at_ms + ? <= ? OR COALESCE(pushed_at_ms, opened_at_ms) + ? <= ?) ORDER BY id`,
		hold.Milliseconds(), now.UnixMilli(), most.Milliseconds(), now.UnixMilli())
	return collect(rows, err, scanID)
}

// closeQuietIncidents closes the incidents with every member pushed and no
// member since before.
func (q queries) closeQuietIncidents(ctx context.Context, before time.Time) error {
	_, err := q.db.ExecContext(ctx, `UPDATE incidents SET is_open = 0 WHERE is_open = 1 AND members = members_pushed
		AND last_member_at_ms < ?`, before.UnixMilli())
	return err
}

// incident reads the station, leader and pushes so far of incident id.
func (q queries) incident(ctx context.Context, id int64) (station string, leader, pushes int64, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT station_id, leader_id, pushes FROM incidents WHERE id = ?`, id).
		Scan(&station, &leader, &pushes)
	return station, leader, pushes, err
}

// claimIncidentPush takes push number pushes+1 of incident id, if nobody
// took it (another instance flushing the same incident then leaves it).
func (q queries) claimIncidentPush(ctx context.Context, id, pushes int64) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE incidents SET pushes = pushes + 1 WHERE id = ? AND pushes = ?`, id, pushes))
}

// listMembers marks the members of incident id not listed yet as listed
// first by push number push.
func (q queries) listMembers(ctx context.Context, id, push int64) error {
	_, err := q.db.ExecContext(ctx, `UPDATE alarms SET incident_push = ? WHERE incident_id = ? AND incident_push IS NULL`,
		push, id)
	return err
}

// listedMembers reads the listed members of incident id, oldest first.
func (q queries) listedMembers(ctx context.Context, id int64) ([]Alarm, error) {
	rows, err := q.db.QueryContext(ctx, "SELECT "+alarmColumns+" FROM alarms WHERE incident_id = ? AND incident_push IS NOT NULL ORDER BY id", id)
	return collect(rows, err, func(sc scanner, a *Alarm) error {
		var err error
		*a, err = scanAlarm(sc)
		return err
	})
}

// incidentPushed records that incident id was pushed at now with members
// alarms.
func (q queries) incidentPushed(ctx context.Context, id int64, members int, now time.Time) error {
	_, err := q.db.ExecContext(ctx, `UPDATE incidents SET members_pushed = ?, pushed_at_ms = ? WHERE id = ?`,
		members, now.UnixMilli(), id)
	return err
}
