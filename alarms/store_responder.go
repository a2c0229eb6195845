package alarms

import (
	"context"
	"fmt"
	"time"
)

// The statements of the responder page and the console (responder.go).

// setStation moves open alarm id from station from to station to; false
// when it is closed or no longer at from (another writer got there first).
func (q queries) setStation(ctx context.Context, id int64, from, to string) (bool, error) {
	return changed(q.db.ExecContext(ctx, `UPDATE alarms SET station_id = ? WHERE id = ? AND is_open = 1 AND station_id = ?`, to, id, from))
}

// redispatches counts the re-dispatches (改派) in alarm id's history.
func (q queries) redispatches(ctx context.Context, id int64) (int, error) {
	var n int
	err := q.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM alarm_history WHERE alarm_id = ? AND note LIKE '改派至 %'`, id).Scan(&n)
	return n, err
}

// pushStations returns the station of alarm id, whether it is open, and
// the station that outbox row push names.
func (q queries) pushStations(ctx context.Context, id, push int64) (station string, open bool, pushStation string, err error) {
	err = q.db.QueryRowContext(ctx, `SELECT a.station_id, a.is_open, o.station_id FROM alarms a, outbox o
		WHERE a.id = ? AND o.id = ?`, id, push).Scan(&station, &open, &pushStation)
	return station, open, pushStation, err
}

// members counts the changes of each responder actor ("name@station")
// since the given time, most recent first, at most limit.
func (q queries) members(ctx context.Context, since time.Time, limit int) ([]Member, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT actor, COUNT(*), MAX(at_ms) FROM alarm_history
		WHERE at_ms >= ? AND actor LIKE '%@%' GROUP BY actor ORDER BY MAX(at_ms) DESC LIMIT ?`, since.UnixMilli(), limit)
	ms, err := collect(rows, err, func(sc scanner, m *Member) error {
		var last int64
		if err := sc.Scan(&m.Name, &m.Changes, &last); err != nil {
			return err
		}
		m.Last = msTime(last)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	return ms, nil
}
