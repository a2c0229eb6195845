package alarms

import (
	"context"
	"database/sql"
	"errors"
)

// Queries of the centre reports (delivery_centre.go).

// centreTold reports whether alarm id's raise was reported to the centre.
func (q queries) centreTold(ctx context.Context, id int64) (bool, error) {
	var one int
	err := q.db.QueryRowContext(ctx, `SELECT 1 FROM outbox WHERE alarm_id = ? AND target = ? AND transition = ? LIMIT 1`,
		id, TargetCentre, TransitionRaised).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	return err == nil, err
}

// centreOpenSeverities lists the severities of device's open alarms whose
// raise was reported to the centre.
func (q queries) centreOpenSeverities(ctx context.Context, device string) ([]string, error) {
	rows, err := q.db.QueryContext(ctx, `SELECT DISTINCT a.severity FROM alarms a WHERE a.device_id = ? AND a.is_open = 1
		AND EXISTS (SELECT 1 FROM outbox o WHERE o.alarm_id = a.id AND o.target = ? AND o.transition = ?)`,
		device, TargetCentre, TransitionRaised)
	return collect(rows, err, func(sc scanner, s *string) error { return sc.Scan(s) })
}
